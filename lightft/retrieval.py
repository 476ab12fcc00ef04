"""Retrieval question answering over the book's own chapters. Chapter: "Applications" (question answering).

:func:`split_book` cuts the chapters into passages; :func:`embed` gives mean-pooled unit vectors as all-MiniLM-L6-v2
was trained (written out because the chapter tunes the in-memory encoder in place; tested equal to
``SentenceTransformer.encode``); :class:`Retriever` ranks passages by cosine similarity; :func:`pseudo_queries` and
:func:`contrastive_finetune` tune the encoder without the evaluation questions."""

from __future__ import annotations

import inspect
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from lightft import checks, timing

SKIPPED_PAGES = ("bibliography", "about")   # pages with no prose worth retrieving
SKIPPED_SECTIONS = ("Exercises",)            # sections that hold questions, not answers


@dataclass(frozen=True)
class Passage:
    """One H2 section: ``id`` is ``"<chapter>#<MyST label>"`` or ``"<chapter>#<slug of the title>"``."""
    id: str
    chapter: str
    chapter_title: str
    title: str
    text: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Question:
    """A question written for the book, and the id of the passage that answers it."""
    question: str
    passage: str


def slugify(title: str) -> str:
    """``"Why divide by $\\sqrt{d_k}$?"`` -> ``"why-divide-by-sqrt-d-k"``: lower-case ASCII letters and
    digits joined by hyphens (other characters, such as Chinese or math, are dropped)."""
    checks.instance("title", title, str, "a string")
    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))


_FENCE = re.compile(r"^(\s*)(`{3,}|:{3,})\s*(\{[^}]*\}|[\w+-]*)?(.*)$")
_LABEL = re.compile(r"^\(([\w\-.:]+)\)=\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_DIRECTIVES = ("{code-cell}", "{code-block}", "{code}", "{literalinclude}")
_INLINE = [  # (pattern, replacement), applied in order to every prose line
    (re.compile(r"\{glue(?::\w*)?\}`[^`]*`"), "N"),   # a number glued in at build time: unknown here
    (re.compile(r"\s?\{cite(?::\w+)?\}`[^`]*`"), ""),
    (re.compile(r"\{(?:ref|doc|term|numref|eq|func|class|meth|mod|attr|py:func|py:class)\}"
                r"`([^`<]*?)\s*(?:<([^>]*)>)?`"),
     lambda m: m.group(1) or m.group(2) or ""),
    (re.compile(r"\[([^\]]+)\]\([^)]+\)"), r"\1"),    # markdown links -> their text
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1"),
]


def _clean_inline(text: str) -> str:
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text


def _prose_lines(lines: list[str]) -> list[str]:
    """Drop code (code cells, fenced code, display math, directive options); keep other directives' prose."""
    out, stack = [], []   # the open fences: (fence char, length, holds code)
    for line in lines:
        if match := _FENCE.match(line):
            fence, kind, rest = match.group(2), match.group(3) or "", match.group(4).strip()
            if stack and fence[0] == stack[-1][0] and len(fence) >= stack[-1][1] and not (kind or rest):
                stack.pop()
                continue
            if not (stack and stack[-1][2]):
                is_code = kind == "{math}" or (  # display math reads badly as prose
                    fence[0] == "`" and (not kind.startswith("{") or kind in _CODE_DIRECTIVES))
                stack.append((fence[0], len(fence), is_code))
                continue
        if not (stack and (stack[-1][2] or re.match(r"^\s*:[\w-]+:", line))):   # options such as :tags:
            out.append(line)
    return out


def _chapter_lines(path: Path) -> list[str]:
    """A MyST chapter's lines, or its paired notebook's markdown cells (the front matter, being before
    the H1, is dropped with all else there)."""
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8").splitlines()
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable Jupyter notebook ({err})") from None
    sources = ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "markdown"]
    return [line for source in sources for line in source.splitlines() + [""]]


def _sections(lines: list[str]) -> tuple[str | None, list[dict]]:
    """The H1 title and the H1/H2 sections (``title``, ``label``, ``lines``; H3+ headings become prose)."""
    chapter_title, sections, label = None, [], None
    for line in _prose_lines(lines):
        if _LABEL.match(line.strip()):
            label = _LABEL.match(line.strip()).group(1)
            continue
        if (heading := _HEADING.match(line)) and len(heading.group(1)) <= 2:
            title = _clean_inline(heading.group(2)).strip()
            chapter_title = title if len(heading.group(1)) == 1 else chapter_title
            sections.append({"title": title, "label": label, "lines": []})
            label = None
        elif sections:
            sections[-1]["lines"].append(_clean_inline(heading.group(2)) + "." if heading else _clean_inline(line))
        if line.strip() and not heading:
            label = None
    return chapter_title, sections


def split_chapter(path: str | os.PathLike, *, skip_sections: Sequence[str] = SKIPPED_SECTIONS) -> list[Passage]:
    """Cut one MyST chapter (``.md`` or paired ``.ipynb``) into passages: the text under the H1, then
    each H2 section with its H3 subsections. Code is dropped; sections with no prose are left out."""
    path = Path(path)  # a missing file: the FileNotFoundError of reading it
    chapter, (chapter_title, sections) = path.stem, _sections(_chapter_lines(path))
    passages, seen = [], set()
    for section in sections:
        text = re.sub(r"\s+", " ", " ".join(section["lines"])).strip()
        if section["title"] in skip_sections or not text:
            continue
        slug = slugify(section["title"]) or "section"
        pid = base = f"{chapter}#{section['label'] or slug}"
        n = 2
        while pid in seen:   # two sections with the same title: number the later ones
            pid, n = f"{base}-{n}", n + 1
        seen.add(pid)
        aliases = tuple(sorted({f"{chapter}#{slug}"} - {pid}))
        passages.append(Passage(pid, chapter, chapter_title or chapter, section["title"], text, aliases))
    return passages


def find_book_dir(start: str | os.PathLike | None = None) -> Path:
    """The folder ``book/`` (with ``intro.md``) that is, or is in, ``start`` or one of its parents;
    ``start`` defaults to the working directory, then this package's folder."""
    roots = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).parent]
    found = [c for root in roots for f in (root.resolve(), *root.resolve().parents) for c in (f, f / "book")
             if c.name == "book" and (c / "intro.md").is_file()]
    if not found:
        raise FileNotFoundError("found no folder book/ with intro.md; run from a clone of lightft or pass book_dir=")
    return found[0]


def split_book(book_dir: str | os.PathLike | None = None, chapters: Iterable[str] | None = None) -> list[Passage]:
    """The passages of the ``chapters`` (file stems; default all but ``SKIPPED_PAGES``) in ``book_dir``
    (default :func:`find_book_dir`), in file-name order. A chapter is its ``.md``, or its paired ``.ipynb``
    where only that is present (as in the copy ``make test`` executes)."""
    folder = Path(book_dir) if book_dir is not None else find_book_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    if isinstance(chapters, str):
        raise TypeError("chapters must be a list of chapter names, not one string")
    files = {f.stem: f for f in folder.glob("*.ipynb")} | {f.stem: f for f in folder.glob("*.md")}
    wanted = set(files) - set(SKIPPED_PAGES) if chapters is None else set(chapters)
    if wanted - set(files):
        raise ValueError(f"no such chapter(s) in {folder}: {sorted(wanted - set(files))}")
    if not (passages := [p for stem in sorted(wanted) for p in split_chapter(files[stem])]):
        raise ValueError(f"{folder}: no passages found in {len(wanted)} file(s)")
    return passages


def find_passage(passages: Sequence[Passage], passage_id: str) -> Passage:
    """The passage with this id or alias (``"chapter#label"`` or ``"chapter#slug"``)."""
    for passage in passages:
        if passage_id in (passage.id, *passage.aliases):
            return passage
    raise KeyError(f"no passage {passage_id!r}; ids look like {passages[0].id!r}" if passages else "no passages")


def load_questions(path: str | os.PathLike | None = None) -> list[Question]:
    """The question set written for this book (``lightft/qa_questions.jsonl``), or a JSONL file of your
    own with one ``{"question": ..., "passage": "chapter#section"}`` object per line."""
    source, questions = Path(path or Path(__file__).with_name("qa_questions.jsonl")), []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}:{number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "passage")):
            raise ValueError(f"{source}:{number}: expected an object with string fields 'question' and 'passage'")
        questions.append(Question(row["question"].strip(), row["passage"].strip()))
    if not questions:
        raise ValueError(f"{source}: no questions")
    return questions


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``(batch, seq_len, hidden)`` token vectors and a ``(batch, seq_len)`` 0/1 mask -> ``(batch, hidden)``
    means over the real tokens: :math:`\\sum_t m_t h_t / \\sum_t m_t`."""
    if last_hidden_state.dim() != 3 or last_hidden_state.shape[:2] != attention_mask.shape:
        raise ValueError(f"expected last_hidden_state (batch, seq_len, hidden) and attention_mask (batch, "
                         f"seq_len); got {tuple(last_hidden_state.shape)} and {tuple(attention_mask.shape)}")
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _encode(model: nn.Module, tokenizer, texts: Sequence[str], max_length: int, pooling: str = "mean",
            normalize: bool = True) -> torch.Tensor:
    """``(len(texts), hidden)`` vectors (unit length with ``normalize``), with gradients where enabled."""
    device, accepted = next(model.parameters()).device, inspect.signature(model.forward).parameters
    batch = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items() if k != "token_type_ids" or k in accepted}  # not DistilBERT
    hidden = model(**batch).last_hidden_state.float()                            # (n, seq_len, hidden)
    vectors = hidden[:, 0] if pooling == "cls" else mean_pool(hidden, batch["attention_mask"])
    return nn.functional.normalize(vectors, dim=-1) if normalize else vectors


def embed(model: nn.Module, tokenizer, texts: Sequence[str] | str, *, batch_size: int = 32,
          max_length: int = 256, pooling: str = "mean", normalize: bool = True) -> torch.Tensor:
    """Unit-length sentence embeddings ``(n, hidden)`` of a bare encoder (``lightft.load_model(name,
    num_labels=None)``), in eval mode: mean pooling, then L2 norm, so cosine similarity is a dot product.
    ``pooling="cls"`` takes the first token's vector instead; ``normalize=False`` skips the norm."""
    texts, was_training = checks.texts("texts", texts), model.training
    model.eval()
    try:
        with torch.inference_mode():
            return torch.cat([_encode(model, tokenizer, texts[i:i + batch_size], max_length, pooling, normalize)
                              for i in range(0, len(texts), batch_size)])
    finally:
        model.train(was_training)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?:])\s+(?=[A-Z0-9\"'(`$*])", text) if s.strip()]


def _chunks(text: str, max_words: int) -> list[str]:
    """Whole sentences packed into chunks of at most ``max_words`` words (a longer sentence stands alone)."""
    chunks: list[list[str]] = [[]]
    for sentence in _sentences(text):
        if chunks[-1] and len(" ".join(chunks[-1] + [sentence]).split()) > max_words:
            chunks.append([])
        chunks[-1].append(sentence)
    return [" ".join(chunk) for chunk in chunks if chunk]


@dataclass
class Retriever:
    """Passages cut into chunks of at most ``max_words`` words (whole sentences), each embedded with its
    chapter and section title in front; a passage scores as its best chunk. Build with
    ``Retriever.build(model, tokenizer, passages)``; ``search`` and ``rank`` answer questions."""
    passages: list[Passage]
    chunks: list[str]
    owner: np.ndarray                      # (n_chunks,) index of each chunk's passage
    embeddings: torch.Tensor               # (n_chunks, hidden), unit length
    model: nn.Module = field(repr=False)
    tokenizer: object = field(repr=False)
    max_length: int = 256
    seconds: float = 0.0                   # time taken to embed the chunks

    @classmethod
    def build(cls, model: nn.Module, tokenizer, passages: Sequence[Passage], *, max_words: int = 120,
              max_length: int = 256, batch_size: int = 32) -> "Retriever":
        if not passages:
            raise ValueError("passages is empty")
        checks.integer("max_words", max_words, 5)
        pieces = [(i, f"{p.chapter_title}. {p.title}. {chunk}")
                  for i, p in enumerate(passages) for chunk in _chunks(p.text, max_words)]
        chunks, vectors = [chunk for _, chunk in pieces], []
        seconds = timing.time_calls(lambda: vectors.append(embed(model, tokenizer, chunks, batch_size=batch_size,
                                                                 max_length=max_length)), repeats=1, warmup=0)[0]
        return cls(list(passages), chunks, np.array([i for i, _ in pieces]), vectors[0], model, tokenizer,
                   max_length, seconds)

    def scores(self, questions: Sequence[str] | str) -> torch.Tensor:
        """``(n_questions, n_passages)``: each passage's best cosine similarity over its chunks."""
        chunk_scores = embed(self.model, self.tokenizer, questions, max_length=self.max_length) @ self.embeddings.T
        index = torch.as_tensor(self.owner).expand_as(chunk_scores)             # (q, n_chunks)
        out = torch.full((chunk_scores.shape[0], len(self.passages)), -2.0)
        return out.scatter_reduce(1, index, chunk_scores, reduce="amax")

    def search(self, question: str, k: int = 3) -> list[tuple[Passage, float]]:
        """The ``k`` best passages for one question, with their cosine similarity."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        top = torch.topk(self.scores([question])[0], min(checks.integer("k", k), len(self.passages)))
        return [(self.passages[i], float(s)) for s, i in zip(top.values, top.indices)]

    def rank(self, questions: Sequence[Question]) -> np.ndarray:
        """The 1-based rank of each question's answer passage among all passages, shape ``(n,)``."""
        index = {key: i for i, p in reversed(list(enumerate(self.passages))) for key in (*p.aliases, p.id)}
        if missing := sorted({q.passage for q in questions} - set(index)):
            raise KeyError(f"answer passage(s) not in the retriever: {missing}")
        scores = self.scores([q.question for q in questions])                   # (n, n_passages)
        answer = scores.gather(1, torch.tensor([[index[q.passage]] for q in questions]))
        return (1 + (scores > answer).sum(1)).numpy()


def retrieval_metrics(ranks: Sequence[int], ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (share of questions whose answer is ranked k or better) and the mean reciprocal
    rank, :math:`\\mathrm{MRR} = \\frac1n \\sum_i 1/r_i`, from 1-based ranks ``r_i``."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0 or not np.issubdtype(ranks.dtype, np.integer) or ranks.min() < 1:
        raise ValueError("ranks must be a non-empty 1-D sequence of integers >= 1 (1 = the answer came first)")
    return {**{f"top{k}": float(np.mean(ranks <= k)) for k in ks}, "mrr": float(np.mean(1.0 / ranks))}


def pseudo_queries(passages: Sequence[Passage], *, max_words: int = 120) -> list[tuple[str, str, str]]:
    """Training pairs ``(query, positive text, passage id)`` from the passages alone, never the evaluation
    questions: the section title against each chunk (without the title), and each chunk's first sentence
    against the rest of that chunk (so the answer never contains the query word for word)."""
    pairs = []
    for passage in passages:
        for chunk in _chunks(passage.text, max_words):
            first, *rest = _sentences(chunk)
            pairs.append((passage.title, chunk, passage.id))
            pairs += [(first, " ".join(rest), passage.id)] if len(rest) >= 2 and len(first.split()) >= 5 else []
    return pairs


def _in_batch_loss(model: nn.Module, tokenizer, batch: list[tuple[str, str, str]], temperature: float,
                   max_length: int) -> torch.Tensor:
    """Multiple-negatives ranking loss of a batch of ``B`` pairs; same-passage pairs are not negatives."""
    q = _encode(model, tokenizer, [b[0] for b in batch], max_length)             # (B, hidden)
    p = _encode(model, tokenizer, [b[1] for b in batch], max_length)             # (B, hidden)
    ids = np.array([b[2] for b in batch])
    same = torch.as_tensor((ids[:, None] == ids[None, :]) & ~np.eye(len(batch), dtype=bool), device=q.device)
    logits = (q @ p.T / temperature).masked_fill(same, float("-inf"))             # (B, B)
    return nn.functional.cross_entropy(logits, torch.arange(len(batch), device=q.device))


def contrastive_finetune(model: nn.Module, tokenizer, pairs: Sequence[tuple[str, str, str]], *, epochs: int = 1,
                         batch_size: int = 16, learning_rate: float = 2e-5, temperature: float = 0.05,
                         max_length: int = 256, seed: int = 0, freeze_embeddings: bool = True) -> list[float]:
    """Fine-tune a bare encoder in place with in-batch negatives; returns the loss of every step.

    A batch of ``B`` pairs is embedded as in :func:`embed` to ``q, p`` ``(B, hidden)``; the logits
    ``q p^T / temperature`` ``(B, B)`` are trained with cross-entropy towards the diagonal: the multiple-
    negatives ranking loss, written out because other pairs of the *same* passage are masked, not
    counted as negatives. ``freeze_embeddings`` keeps the token embeddings fixed (a light touch)."""
    if not pairs:
        raise ValueError("pairs is empty")
    checks.integer("batch_size (in-batch negatives need company)", batch_size, 2)
    checks.integer("epochs", epochs)
    checks.number("temperature", temperature, 0)
    generator, losses = random.Random(seed), []
    torch.manual_seed(seed)
    frozen = [p for n, p in model.named_parameters() if freeze_embeddings and "embeddings" in n and p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.01)
    model.train()
    try:
        for _ in range(epochs):
            order = list(range(len(pairs)))
            generator.shuffle(order)
            for start in range(0, len(order) - 1, batch_size):   # a last batch of one has no negatives
                loss = _in_batch_loss(model, tokenizer, [pairs[i] for i in order[start:start + batch_size]],
                                      temperature, max_length)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    finally:
        model.eval()
        for param in frozen:
            param.requires_grad_(True)
    return losses
