"""Retrieval question answering with a small encoder: the book's own chapters as the passages.

Chapter: "Applications" (``book/applications.md``), section on question answering.

The pieces, in the order the chapter uses them:

* :func:`split_book` reads the book's MyST sources at run time and cuts each chapter into one
  :class:`Passage` per H2 section (prose only: code cells and code blocks are dropped). A passage's id
  is ``"<chapter>#<label>"`` when the section carries a MyST label ``(label)=``, else
  ``"<chapter>#<slug of the title>"``; :func:`find_passage` accepts either form.
* :func:`mean_pool` and :func:`embed` turn texts into unit vectors the way sentence encoders such as
  all-MiniLM-L6-v2 were trained (mean of the token vectors, padding excluded) (Reimers and Gurevych, Sentence-BERT).
* :class:`Retriever` cuts passages into chunks of a few sentences, embeds them once, and ranks the
  passages for a question by cosine similarity (a passage scores as its best chunk).
* :func:`retrieval_metrics` gives top-k accuracy and the mean reciprocal rank (MRR).
* :func:`pseudo_queries` and :func:`contrastive_finetune` fine-tune the encoder lightly with an
  in-batch-negatives contrastive loss on queries made from the passages themselves (section titles and
  first sentences), never on the evaluation questions (:func:`load_questions`).
"""

from __future__ import annotations

import inspect
import json
import os
import random
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "Passage",
    "Question",
    "Retriever",
    "contrastive_finetune",
    "embed",
    "find_book_dir",
    "find_passage",
    "load_questions",
    "mean_pool",
    "pseudo_queries",
    "retrieval_metrics",
    "slugify",
    "split_book",
    "split_chapter",
]

#: Pages that are not chapters with prose worth retrieving: the bibliography and the build report.
SKIPPED_PAGES = ("bibliography", "about")
#: Section titles that hold questions for the reader, not answers.
SKIPPED_SECTIONS = ("Exercises",)


@dataclass(frozen=True)
class Passage:
    """One H2 section of a chapter: ``id`` is ``"<chapter>#<label or slug>"``."""

    id: str
    chapter: str
    chapter_title: str
    title: str
    text: str
    aliases: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.id}: {self.title}"


@dataclass(frozen=True)
class Question:
    """A question written for the book, and the id of the passage that answers it."""

    question: str
    passage: str


def slugify(title: str) -> str:
    """``"Why divide by $\\sqrt{d_k}$?"`` -> ``"why-divide-by-sqrt-d-k"``: lower case, ASCII letters and
    digits joined by single hyphens (other characters, such as Chinese or math, are dropped)."""
    if not isinstance(title, str):
        raise TypeError(f"slugify expects a string, got {type(title).__name__}")
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "-".join(words)


_FENCE = re.compile(r"^(\s*)(`{3,}|:{3,})\s*(\{[^}]*\}|[\w+-]*)?(.*)$")
_LABEL = re.compile(r"^\(([\w\-.:]+)\)=\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ROLE_GLUE = re.compile(r"\{glue(?::\w*)?\}`[^`]*`")
_ROLE_CITE = re.compile(r"\s?\{cite(?::\w+)?\}`[^`]*`")
_ROLE_REF = re.compile(r"\{(?:ref|doc|term|numref|eq|func|class|meth|mod|attr|py:func|py:class)\}`([^`<]*?)\s*(?:<([^>]*)>)?`")
_CODE_DIRECTIVES = ("{code-cell}", "{code-block}", "{code}", "{literalinclude}")


def _clean_inline(text: str) -> str:
    text = _ROLE_GLUE.sub("N", text)          # a number glued in at build time: unknown here
    text = _ROLE_CITE.sub("", text)
    text = _ROLE_REF.sub(lambda m: m.group(1) or m.group(2) or "", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)   # markdown links -> their text
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    return text


def _prose_lines(lines: list[str]) -> list[str]:
    """Drop code (code cells, fenced code, directive options); keep the prose inside other directives."""
    out: list[str] = []
    stack: list[tuple[str, int, bool]] = []   # (fence char, length, is code)
    for line in lines:
        match = _FENCE.match(line)
        if match:
            fence, kind = match.group(2), (match.group(3) or "")
            closing = stack and fence[0] == stack[-1][0] and len(fence) >= stack[-1][1] and not kind and not match.group(4).strip()
            if closing:
                stack.pop()
                continue
            in_code = bool(stack and stack[-1][2])
            if not in_code:
                is_code = fence[0] == "`" and (not kind.startswith("{") or kind in _CODE_DIRECTIVES)
                if kind in ("{math}",):
                    is_code = True   # display math reads badly as prose
                stack.append((fence[0], len(fence), is_code))
                continue
        if stack and stack[-1][2]:
            continue
        if stack and re.match(r"^\s*:[\w-]+:", line):   # directive options such as :tags: or :class:
            continue
        out.append(line)
    return out


def _front_matter_end(lines: list[str]) -> int:
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() == "---":
                return i + 1
    return 0


def _notebook_prose(path: Path) -> list[str]:
    """The markdown cells of a chapter's paired notebook, in order (code cells hold no prose)."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable Jupyter notebook ({err})") from None
    lines: list[str] = []
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            lines += ("".join(source) if isinstance(source, list) else str(source)).splitlines() + [""]
    return lines


def split_chapter(path: str | os.PathLike, *, skip_sections: Sequence[str] = SKIPPED_SECTIONS) -> list[Passage]:
    """Cut one MyST chapter into passages: the text before the first H2 (under the H1), then each H2
    section with its H3 subsections. Code is dropped; sections with no prose are left out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such chapter file")
    if path.suffix == ".ipynb":
        lines = _notebook_prose(path)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        lines = lines[_front_matter_end(lines):]
    lines = _prose_lines(lines)
    chapter = path.stem
    chapter_title = chapter
    sections: list[dict] = []
    current: dict | None = None
    pending_label: str | None = None
    for line in lines:
        label = _LABEL.match(line.strip())
        if label:
            pending_label = label.group(1)
            continue
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) <= 2:
            title = _clean_inline(heading.group(2)).strip()
            if len(heading.group(1)) == 1:
                chapter_title = title
            current = {"title": title, "label": pending_label, "lines": []}
            sections.append(current)
            pending_label = None
            continue
        if line.strip():
            pending_label = None if not heading else pending_label
        if current is not None:
            current["lines"].append(_clean_inline(heading.group(2)) + "." if heading else _clean_inline(line))
    passages = []
    seen: set[str] = set()
    for section in sections:
        if section["title"] in skip_sections:
            continue
        text = re.sub(r"\s+", " ", " ".join(section["lines"])).strip()
        if not text:
            continue
        slug = slugify(section["title"]) or "section"
        key = section["label"] or slug
        pid = f"{chapter}#{key}"
        if pid in seen:   # two sections with the same title: number the later ones
            n = 2
            while f"{pid}-{n}" in seen:
                n += 1
            pid = f"{pid}-{n}"
        seen.add(pid)
        aliases = tuple(sorted({f"{chapter}#{slug}", pid} - {pid}))
        passages.append(Passage(pid, chapter, chapter_title, section["title"], text, aliases))
    return passages


def find_book_dir(start: str | os.PathLike | None = None) -> Path:
    """The folder holding the book's chapters (``*.md``): ``start`` itself, or ``book/`` in it or in one
    of its parents; by default searched from the working directory and from this package's folder."""
    candidates: list[Path] = []
    roots = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for root in roots:
        root = root.resolve()
        for folder in (root, *root.parents):
            candidates += [folder, folder / "book"]
    for folder in candidates:
        if (folder / "intro.md").is_file() and any(folder.glob("*.md")) and folder.name == "book":
            return folder
    raise FileNotFoundError(
        "could not find the book's chapters (a folder book/ with intro.md); run from a clone of the "
        "lightft repository or pass book_dir="
    )


def split_book(book_dir: str | os.PathLike | None = None, chapters: Iterable[str] | None = None) -> list[Passage]:
    """All passages of the book, chapter by chapter in file-name order.

    Args:
        book_dir: the folder with the chapters' ``.md`` files (default: :func:`find_book_dir`).
        chapters: chapter names (file stems) to keep; default every page except
            ``bibliography`` and ``about``.
    """
    folder = Path(book_dir) if book_dir is not None else find_book_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    # a chapter is its MyST source, or its paired notebook where only that is present (as in the
    # scratch copy `make test` executes, which keeps the .ipynb of each paired chapter)
    chapter_files = {f.stem: f for f in folder.glob("*.ipynb")}
    chapter_files.update({f.stem: f for f in folder.glob("*.md")})
    files = [chapter_files[stem] for stem in sorted(chapter_files)]
    if chapters is not None:
        if isinstance(chapters, str):
            raise TypeError("chapters must be a list of chapter names, not one string")
        wanted = list(chapters)
        missing = sorted(set(wanted) - {f.stem for f in files})
        if missing:
            raise ValueError(f"no such chapter(s) in {folder}: {missing}")
        files = [f for f in files if f.stem in wanted]
    else:
        files = [f for f in files if f.stem not in SKIPPED_PAGES]
    passages = [p for f in files for p in split_chapter(f)]
    if not passages:
        raise ValueError(f"{folder}: no passages found in {len(files)} file(s)")
    return passages


def find_passage(passages: Sequence[Passage], passage_id: str) -> Passage:
    """The passage with this id or alias (``"chapter#label"`` or ``"chapter#slug"``)."""
    for passage in passages:
        if passage.id == passage_id or passage_id in passage.aliases:
            return passage
    raise KeyError(f"no passage {passage_id!r}; ids look like {passages[0].id!r}" if passages else "no passages")


def load_questions(path: str | os.PathLike | None = None) -> list[Question]:
    """The question set written for this book (``lightft/qa_questions.jsonl``), or a JSONL file of your
    own with one ``{"question": ..., "passage": "chapter#section"}`` object per line."""
    if path is None:
        text = resources.files("lightft").joinpath("qa_questions.jsonl").read_text(encoding="utf-8")
        source = "lightft/qa_questions.jsonl"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    questions = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}:{number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("passage"), str):
            raise ValueError(f"{source}:{number}: expected an object with string fields 'question' and 'passage'")
        questions.append(Question(row["question"].strip(), row["passage"].strip()))
    if not questions:
        raise ValueError(f"{source}: no questions")
    return questions


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors of each text, ignoring padding.

    Args:
        last_hidden_state: ``(batch, seq_len, hidden)``.
        attention_mask: ``(batch, seq_len)``, 1 for real tokens and 0 for padding.

    Returns:
        ``(batch, hidden)``: :math:`\\sum_t m_t h_t / \\sum_t m_t`.
    """
    if last_hidden_state.dim() != 3 or attention_mask.dim() != 2 or last_hidden_state.shape[:2] != attention_mask.shape:
        raise ValueError(
            f"expected last_hidden_state (batch, seq_len, hidden) and attention_mask (batch, seq_len); got "
            f"{tuple(last_hidden_state.shape)} and {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _encode(model: nn.Module, tokenizer, texts: Sequence[str], max_length: int) -> torch.Tensor:
    device = next(model.parameters()).device
    batch = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(device)
    if "token_type_ids" in batch and "token_type_ids" not in inspect.signature(model.forward).parameters:
        batch.pop("token_type_ids")   # DistilBERT has no segment embeddings
    hidden = model(**batch).last_hidden_state
    return nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]).float(), dim=-1)


def embed(model: nn.Module, tokenizer, texts: Sequence[str] | str, *, batch_size: int = 32, max_length: int = 256) -> torch.Tensor:
    """Unit-length sentence embeddings ``(n, hidden)`` of ``texts``: mean pooling, then L2 normalisation.

    ``model`` is a bare encoder (``lightft.load_model(name, num_labels=None)``); runs in eval mode
    without gradients. Cosine similarity of two embeddings is then their dot product.
    """
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts) or len(texts) == 0:
        raise TypeError("texts must be a string or a non-empty list of strings")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [_encode(model, tokenizer, texts[i:i + batch_size], max_length) for i in range(0, len(texts), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?:])\s+(?=[A-Z0-9\"'(`$*])", text) if s.strip()]


def _chunks(text: str, max_words: int) -> list[str]:
    chunks, current, words = [], [], 0
    for sentence in _sentences(text):
        n = len(sentence.split())
        if current and words + n > max_words:
            chunks.append(" ".join(current))
            current, words = [], 0
        current.append(sentence)
        words += n
    if current:
        chunks.append(" ".join(current))
    return chunks


@dataclass
class Retriever:
    """Passages cut into chunks of at most ``max_words`` words (whole sentences), each embedded with
    its chapter and section title in front; a question's passages are ranked by their best chunk.

    Build with ``Retriever.build(model, tokenizer, passages)``; ``search`` and ``rank`` answer questions.
    """

    passages: list[Passage]
    chunks: list[str]
    owner: np.ndarray                      # (n_chunks,) index of each chunk's passage
    embeddings: torch.Tensor               # (n_chunks, hidden), unit length
    model: nn.Module = field(repr=False)
    tokenizer: object = field(repr=False)
    max_length: int = 256
    seconds: float = 0.0

    @classmethod
    def build(cls, model: nn.Module, tokenizer, passages: Sequence[Passage], *, max_words: int = 120,
              max_length: int = 256, batch_size: int = 32) -> "Retriever":
        if not passages:
            raise ValueError("passages is empty")
        if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 5:
            raise ValueError(f"max_words must be an integer >= 5, got {max_words!r}")
        chunks, owner = [], []
        for i, passage in enumerate(passages):
            for chunk in _chunks(passage.text, max_words):
                chunks.append(f"{passage.chapter_title}. {passage.title}. {chunk}")
                owner.append(i)
        start = time.perf_counter()
        vectors = embed(model, tokenizer, chunks, batch_size=batch_size, max_length=max_length)
        return cls(list(passages), chunks, np.asarray(owner), vectors, model, tokenizer, max_length,
                   time.perf_counter() - start)

    def scores(self, questions: Sequence[str] | str) -> torch.Tensor:
        """``(n_questions, n_passages)``: each passage's best cosine similarity over its chunks."""
        queries = embed(self.model, self.tokenizer, questions, max_length=self.max_length)
        chunk_scores = queries @ self.embeddings.T                       # (q, n_chunks)
        out = torch.full((chunk_scores.shape[0], len(self.passages)), -2.0)
        index = torch.as_tensor(self.owner).expand_as(chunk_scores)
        return out.scatter_reduce(1, index, chunk_scores, reduce="amax")

    def search(self, question: str, k: int = 3) -> list[tuple[Passage, float]]:
        """The ``k`` best passages for one question, with their cosine similarity."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        scores = self.scores([question])[0]
        top = torch.topk(scores, min(k, len(self.passages)))
        return [(self.passages[i], float(s)) for s, i in zip(top.values, top.indices)]

    def rank(self, questions: Sequence[Question]) -> np.ndarray:
        """The 1-based rank of each question's answer passage among all passages, shape ``(n,)``."""
        index = {}
        for i, passage in enumerate(self.passages):
            for key in (passage.id, *passage.aliases):
                index.setdefault(key, i)
        missing = [q.passage for q in questions if q.passage not in index]
        if missing:
            raise KeyError(f"answer passage(s) not in the retriever: {sorted(set(missing))}")
        scores = self.scores([q.question for q in questions])
        answer = torch.tensor([index[q.passage] for q in questions])
        answer_scores = scores.gather(1, answer[:, None])
        return (1 + (scores > answer_scores).sum(1)).numpy()


def retrieval_metrics(ranks: Sequence[int], ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (share of questions whose answer is ranked k or better) and the mean reciprocal
    rank, :math:`\\mathrm{MRR} = \\frac1n \\sum_i 1/r_i`, from 1-based ranks ``r_i``."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError("ranks must be a non-empty 1-D sequence")
    if not np.issubdtype(ranks.dtype, np.integer) or ranks.min() < 1:
        raise ValueError("ranks must be integers >= 1 (1 = the answer came first)")
    out = {f"top{k}": float(np.mean(ranks <= k)) for k in ks}
    out["mrr"] = float(np.mean(1.0 / ranks))
    return out


def pseudo_queries(passages: Sequence[Passage], *, max_words: int = 120) -> list[tuple[str, str, str]]:
    """Training pairs made from the passages alone: ``(query, positive text, passage id)``.

    Two kinds per passage: its section title against each of its chunks (without the title), and the
    first sentence of each chunk against the rest of that chunk (so the answer never contains the
    query word for word). No evaluation question is used.
    """
    pairs = []
    for passage in passages:
        for chunk in _chunks(passage.text, max_words):
            pairs.append((passage.title, chunk, passage.id))
            sentences = _sentences(chunk)
            if len(sentences) >= 3 and len(sentences[0].split()) >= 5:
                pairs.append((sentences[0], " ".join(sentences[1:]), passage.id))
    return pairs


def contrastive_finetune(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[tuple[str, str, str]],
    *,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    temperature: float = 0.05,
    max_length: int = 256,
    seed: int = 0,
    freeze_embeddings: bool = True,
) -> list[float]:
    """Fine-tune a bare encoder in place with in-batch negatives and return the loss of every step.

    For a batch of ``B`` pairs, queries and positives are embedded (:func:`mean_pool`, unit length) to
    ``q, p`` of shape ``(B, hidden)``; the logits ``q p^T / temperature`` ``(B, B)`` are trained with
    cross-entropy towards the diagonal, so every other positive in the batch is a negative
    (the multiple-negatives ranking loss of sentence-transformers). Other pairs from the *same* passage
    are masked out, not counted as negatives. ``freeze_embeddings`` keeps the token embeddings fixed
    (a light touch on a few hundred pairs).
    """
    if not pairs:
        raise ValueError("pairs is empty")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2 (in-batch negatives need company), got {batch_size!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    generator = random.Random(seed)
    torch.manual_seed(seed)
    frozen = []
    if freeze_embeddings:
        for name, param in model.named_parameters():
            if "embeddings" in name and param.requires_grad:
                param.requires_grad_(False)
                frozen.append(param)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.01)
    device = next(model.parameters()).device
    losses: list[float] = []
    model.train()
    try:
        for _ in range(epochs):
            order = list(range(len(pairs)))
            generator.shuffle(order)
            for start in range(0, len(order), batch_size):
                batch = [pairs[i] for i in order[start:start + batch_size]]
                if len(batch) < 2:
                    continue
                q = _encode(model, tokenizer, [b[0] for b in batch], max_length)
                p = _encode(model, tokenizer, [b[1] for b in batch], max_length)
                logits = q @ p.T / temperature                                  # (B, B)
                ids = [b[2] for b in batch]
                same = torch.tensor([[a == b for b in ids] for a in ids], device=device)
                logits = logits.masked_fill(same & ~torch.eye(len(batch), dtype=torch.bool, device=device), float("-inf"))
                loss = nn.functional.cross_entropy(logits, torch.arange(len(batch), device=device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    finally:
        model.eval()
        for param in frozen:
            param.requires_grad_(True)
    return losses
