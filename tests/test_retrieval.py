"""lightft.retrieval: splitting the book into passages, embeddings, ranking metrics, contrastive tuning,
and the question set (every question's answer passage must exist in the current book)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

import lightft
from lightft.retrieval import (
    Question,
    Retriever,
    contrastive_finetune,
    embed,
    find_passage,
    load_questions,
    mean_pool,
    pseudo_queries,
    retrieval_metrics,
    slugify,
    split_book,
    split_chapter,
)

BOOK = Path(__file__).resolve().parent.parent / "book"

CHAPTER = '''---
jupytext:
  formats: ipynb,md:myst
---

(demo)=
# A demo chapter

Opening prose with a citation {cite}`vaswani2017attention` and a number {glue:text}`acc:.1f` percent.

```{code-cell} ipython3
:tags: [parameters]

# not a heading: this is code
MODEL = "minilm-l6"
```

(demo-first)=
## The first section

First sentence of the first section. See {ref}`the attention chapter <attention>` for more.

### A subsection

Still the first section.

```python
print("code block, dropped")
```

## Why $\\sqrt{d_k}$?

```{note}
Prose inside a note is kept.
```

## Only code

```{code-cell} ipython3
x = 1
```

## Exercises

Exercise text, not an answer.
'''


@pytest.fixture()
def chapter(tmp_path):
    path = tmp_path / "demo.md"
    path.write_text(CHAPTER, encoding="utf-8")
    return path


def test_slugify():
    assert slugify("Why divide by $\\sqrt{d_k}$?") == "why-divide-by-sqrt-d-k"
    assert slugify("What it costs: $O(L^2)$") == "what-it-costs-o-l-2"
    assert slugify("Glossary 术语表") == "glossary"


def test_split_chapter_keeps_prose_under_each_h2(chapter):
    passages = split_chapter(chapter)
    assert [p.id for p in passages] == ["demo#demo", "demo#demo-first", "demo#why-sqrt-d-k"]
    top, first, why = passages
    assert top.chapter_title == "A demo chapter" and top.aliases == ("demo#a-demo-chapter",)
    assert "Opening prose" in top.text and "{cite}" not in top.text and "glue" not in top.text
    assert "MODEL" not in top.text and "not a heading" not in top.text
    assert first.title == "The first section" and first.aliases == ("demo#the-first-section",)
    assert "the attention chapter for more" in first.text
    assert "A subsection." in first.text and "Still the first section." in first.text
    assert "print" not in first.text
    assert why.text == "Prose inside a note is kept."
    assert find_passage(passages, "demo#the-first-section") is first
    with pytest.raises(KeyError):
        find_passage(passages, "demo#missing")


def test_split_book_reads_the_real_book():
    passages = split_book(BOOK)
    ids = [p.id for p in passages]
    assert len(ids) == len(set(ids)), "passage ids must be unique"
    assert "attention#why-divide-by-sqrt-d-k" in ids
    assert not any(p.chapter in {"bibliography", "about"} for p in passages)
    assert not any(p.title == "Exercises" for p in passages)
    assert all("```" not in p.text and 'glue("ft_accuracy"' not in p.text for p in passages)
    with pytest.raises(ValueError, match="no such chapter"):
        split_book(BOOK, chapters=["no-such-chapter"])


def test_split_book_reads_paired_notebooks_where_the_md_is_absent(tmp_path):
    # make test executes a scratch copy that keeps only the .ipynb of each paired chapter: the
    # passages read from those notebooks must be the ones read from the MyST sources
    import shutil

    for src in BOOK.iterdir():
        if src.is_file() and not (src.suffix == ".md" and src.with_suffix(".ipynb").exists()):
            shutil.copy2(src, tmp_path / src.name)
    assert not (tmp_path / "attention.md").exists() and (tmp_path / "attention.ipynb").exists()
    from_sources = split_book(BOOK)
    from_notebooks = split_book(tmp_path)
    assert [(p.id, p.title, p.text) for p in from_notebooks] == [(p.id, p.title, p.text) for p in from_sources]
    (tmp_path / "attention.ipynb").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="attention.ipynb: not a readable Jupyter notebook"):
        split_book(tmp_path)


def test_every_question_has_its_answer_passage_in_the_current_book():
    questions = load_questions()
    assert len(questions) >= 60
    assert len({q.question for q in questions}) == len(questions), "duplicate questions"
    passages = split_book(BOOK)
    missing = []
    for q in questions:
        try:
            find_passage(passages, q.passage)
        except KeyError:
            missing.append(q.passage)
    assert not missing, f"answer passages not found in book/ (renamed or removed sections?): {sorted(set(missing))}"


def test_question_file_ships_with_the_package():
    root = Path(lightft.__file__).parent
    assert (root / "qa_questions.jsonl").is_file()
    for line in (root / "qa_questions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        assert set(row) == {"question", "passage"} and "#" in row["passage"]


def test_load_questions_rejects_bad_rows(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "what?"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="passage"):
        load_questions(bad)
    bad.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":1"):
        load_questions(bad)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])   # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]
    with pytest.raises(ValueError):
        mean_pool(hidden[0], mask)


def test_retrieval_metrics_by_hand():
    metrics = retrieval_metrics([1, 2, 10])
    assert metrics["top1"] == pytest.approx(1 / 3)
    assert metrics["top5"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 3)
    with pytest.raises(ValueError):
        retrieval_metrics([0, 1])


def test_pseudo_queries_never_contain_the_evaluation_questions():
    passages = split_book(BOOK)
    pairs = pseudo_queries(passages)
    queries = {q for q, _, _ in pairs}
    assert {p.title for p in passages} <= queries
    assert not queries & {q.question for q in load_questions()}
    for query, positive, _ in pairs:
        assert query not in positive or query in {p.title for p in passages}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    return BertModel(config, add_pooling_layer=False).eval(), lightft.load_tokenizer("minilm-l6")


def test_embed_is_unit_length_and_batch_independent(tiny):
    model, tokenizer = tiny
    texts = ["a short one", "a rather longer sentence with many more words in it", "x"]
    vectors = embed(model, tokenizer, texts, batch_size=2)
    assert vectors.shape == (3, 32)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(embed(model, tokenizer, texts[1]), vectors[1:2], atol=1e-5, rtol=0)


def test_retriever_ranks_an_exact_chunk_first(tiny, chapter):
    model, tokenizer = tiny
    passages = split_chapter(chapter)
    retriever = Retriever.build(model, tokenizer, passages)
    assert retriever.embeddings.shape == (len(retriever.chunks), 32)
    chunk = retriever.chunks[retriever.owner.tolist().index(1)]
    ranks = retriever.rank([Question(chunk, "demo#demo-first"), Question(chunk, "demo#demo")])
    assert ranks[0] == 1 and ranks[1] > 1
    best, score = retriever.search(chunk, k=2)[0]
    assert best.id == "demo#demo-first" and score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(KeyError):
        retriever.rank([Question("q", "demo#nowhere")])


def test_contrastive_finetune_lowers_the_loss_and_keeps_embeddings_frozen(chapter):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    model = BertModel(config, add_pooling_layer=False)
    tokenizer = lightft.load_tokenizer("minilm-l6")
    pairs = [(f"topic {w}", f"a passage about {w} and more {w}", str(i))
             for i, w in enumerate(["cats", "ships", "rain", "music", "bread", "stars", "glass", "roads"])]
    table = model.embeddings.word_embeddings.weight.detach().clone()
    losses = contrastive_finetune(model, tokenizer, pairs, epochs=15, batch_size=8, learning_rate=1e-3)
    assert len(losses) == 15
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert torch.equal(model.embeddings.word_embeddings.weight, table)
    assert model.embeddings.word_embeddings.weight.requires_grad and not model.training
    assert losses[0] <= math.log(8) * 3   # a sane cross-entropy over 8 in-batch candidates
    with pytest.raises(ValueError, match="batch_size"):
        contrastive_finetune(model, tokenizer, pairs, batch_size=1)


@pytest.mark.real
def test_embed_equals_sentence_transformers_encode_on_the_embedded_model():
    # embed() is written out (the chapter fine-tunes the in-memory encoder in place); on the embedded
    # model it must give what sentence-transformers gives with the model's own pooling config
    from sentence_transformers import SentenceTransformer

    texts = ["What does the scaling by the square root of d_k do?", "LoRA trains two small matrices.", "x"]
    reference = SentenceTransformer(str(lightft.models.embedded_model_path("minilm-l6")), device="cpu")
    expected = reference.encode(texts, batch_size=2, convert_to_tensor=True)
    encoder = lightft.load_model("minilm-l6", num_labels=None)
    got = embed(encoder, lightft.load_tokenizer("minilm-l6"), texts, batch_size=2)
    torch.testing.assert_close(got, expected.cpu(), atol=1e-5, rtol=0)
