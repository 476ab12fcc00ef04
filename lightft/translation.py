"""Machine translation in miniature: English number words -> Chinese numerals, with a small
encoder-decoder Transformer trained from scratch.

Chapter: "Machine translation in miniature" (``book/translation.md``).

No translation model and no parallel corpus can be installed offline, so this module *generates*
parallel data and trains its own model:

* :func:`number_to_english` and :func:`number_to_chinese` write a number the way each language says it
  ("twelve thousand three hundred five" / "一万二千三百零五"); :func:`make_translation_splits` draws
  train / validation / test sets of *distinct* numbers, so no test number is ever seen in training.
* :class:`Vocabulary` maps tokens to ids (English: words; Chinese: characters).
* :class:`Translator` is an encoder-decoder Transformer built on :mod:`lightft.attention`: its
  self-attention is :class:`lightft.MultiHeadSelfAttention`, its cross-attention
  (:class:`MultiHeadCrossAttention`) calls :func:`lightft.scaled_dot_product_attention`, and its masks
  are :func:`lightft.padding_mask` and :func:`lightft.causal_mask`.
* :func:`train_translator` trains it with teacher forcing; :func:`translate` decodes greedily;
  :func:`exact_match` and :func:`bleu` (sacrebleu) score the output; :func:`evaluate_translator`
  does all three on a split.
* :func:`hub_translate` runs a real pretrained MT model (Marian ``opus-mt``) where the hub is reachable.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from lightft.attention import MultiHeadSelfAttention, causal_mask, padding_mask, scaled_dot_product_attention
from lightft.hub import HubUnreachableError, hub_reachable

__all__ = [
    "CHINESE_CHARACTERS",
    "ENGLISH_WORDS",
    "MAX_NUMBER",
    "PINYIN",
    "TRANSLATOR_CONFIGS",
    "MultiHeadCrossAttention",
    "TrainedTranslator",
    "TranslationPair",
    "Translator",
    "TranslatorConfig",
    "Vocabulary",
    "bleu",
    "english_tokens",
    "evaluate_translator",
    "exact_match",
    "hub_translate",
    "make_translation_splits",
    "number_to_chinese",
    "number_to_english",
    "train_translator",
    "translate",
]

# ----------------------------------------------------------------------------------------------------
# The two languages
# ----------------------------------------------------------------------------------------------------

MAX_NUMBER = 99_999_999
"""The largest number both writers accept (one below 一亿, 10^8, where Chinese needs a new unit)."""

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ENGLISH_WORDS: tuple[str, ...] = tuple(_ONES + _TENS[2:] + ["hundred", "thousand", "million", "-"])
"""Every English token :func:`number_to_english` can produce (the hyphen of "twenty-one" is a token)."""

_DIGITS = "零一二三四五六七八九"
CHINESE_CHARACTERS: tuple[str, ...] = tuple(_DIGITS + "十百千万")
"""Every character :func:`number_to_chinese` can produce."""

PINYIN: dict[str, str] = dict(zip(CHINESE_CHARACTERS, (
    "líng", "yī", "èr", "sān", "sì", "wǔ", "liù", "qī", "bā", "jiǔ", "shí", "bǎi", "qiān", "wàn")))
"""Each character's reading in pinyin: plot labels in fonts without Chinese glyphs (matplotlib's default)."""


def _check_number(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"expected a whole number (int) from 0 to {MAX_NUMBER:,}, got {type(n).__name__} {n!r}")
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number must be from 0 to {MAX_NUMBER:,}, got {n:,}")
    return n


def _english_below_thousand(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest:
        words.append(_ONES[rest])
    return words


def number_to_english(n: int) -> str:
    """The number in English words, American style: 305 -> "three hundred five" (no "and"),
    21 -> "twenty-one", 1_200_000 -> "one million two hundred thousand". Accepts 0 to :data:`MAX_NUMBER`."""
    n = _check_number(n)
    if n == 0:
        return "zero"
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    words: list[str] = []
    for value, scale in ((millions, "million"), (thousands, "thousand"), (units, None)):
        if value:
            words += _english_below_thousand(value) + ([scale] if scale else [])
    return " ".join(words)


def _chinese_below_myriad(n: int, leading: bool) -> str:
    """1..9999 in Chinese; ``leading``: this group starts the number (so 10..19 drop the 一 of 一十)."""
    out, pending_zero = "", False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit == 0:
            pending_zero = bool(out)  # a zero matters only between non-zero digits
            continue
        if pending_zero:
            out += "零"
            pending_zero = False
        if not (unit == "十" and digit == 1 and leading and not out):
            out += _DIGITS[digit]
        out += unit
    return out


def number_to_chinese(n: int) -> str:
    """The number in Chinese numerals, grouped by 万 (10^4): 12_305 -> "一万二千三百零五",
    15 -> "十五", 110 -> "一百一十", 100_005 -> "十万零五". Uses 二, never 两. Accepts 0 to :data:`MAX_NUMBER`."""
    n = _check_number(n)
    if n == 0:
        return "零"
    high, low = divmod(n, 10_000)
    out = _chinese_below_myriad(high, leading=True) + "万" if high else ""
    if low:
        if high and low < 1000:  # a gap before the low group: 一万零五, 十万零一百
            out += "零"
        out += _chinese_below_myriad(low, leading=not high)
    return out


def english_tokens(text: str) -> list[str]:
    """English text -> tokens: words split on spaces, and "twenty-one" -> ["twenty", "-", "one"]."""
    if not isinstance(text, str):
        raise TypeError(f"expected an English string such as 'twenty-one', got {type(text).__name__}")
    return text.lower().replace("-", " - ").split()


def _join_english(tokens: Sequence[str]) -> str:
    return " ".join(tokens).replace(" - ", "-")


class TranslationPair(NamedTuple):
    """One parallel example: the number, its English words, its Chinese numerals."""

    number: int
    english: str
    chinese: str


def _draw_number(rng: random.Random, max_digits: int, zero_probability: float) -> int:
    digits = rng.randint(1, max_digits)
    value = rng.randint(1, 9)
    for _ in range(digits - 1):
        value = 10 * value + (0 if rng.random() < zero_probability else rng.randint(1, 9))
    return value


def make_translation_splits(
    train: int = 6000,
    validation: int = 500,
    test: int = 1000,
    *,
    max_digits: int = 6,
    zero_probability: float = 1 / 3,
    seed: int = 0,
) -> dict[str, list[TranslationPair]]:
    """Parallel English -> Chinese examples in three splits of *distinct* numbers.

    Each number is drawn as: a digit count uniform from 1 to ``max_digits`` (otherwise nine in ten
    numbers would have the most digits), a first digit from 1-9, and every further digit 0 with
    probability ``zero_probability`` (zeros are where the languages differ most: Chinese writes 零 for a
    gap, English says nothing) and 1-9 otherwise. Numbers already drawn are redrawn, so the three
    splits never share a number: no test number is seen in training.

    Returns ``{"train": [...], "validation": [...], "test": [...]}`` of :class:`TranslationPair`.
    """
    sizes = {"train": train, "validation": validation, "test": test}
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {size!r}")
    if isinstance(max_digits, bool) or not isinstance(max_digits, int) or not 1 <= max_digits <= 8:
        raise ValueError(f"max_digits must be an integer from 1 to 8 (numbers up to {MAX_NUMBER:,}), got {max_digits!r}")
    if not isinstance(zero_probability, (int, float)) or not 0 <= zero_probability < 1:
        raise ValueError(f"zero_probability must be in [0, 1), got {zero_probability!r}")
    total = sum(sizes.values())
    possible = 9 * sum((1 if d == 1 else (10 if zero_probability > 0 else 9) ** (d - 1)) for d in range(1, max_digits + 1))
    if total > possible // 2:
        raise ValueError(
            f"{total:,} distinct numbers asked for, but numbers of at most {max_digits} digits allow only "
            f"{possible:,}; ask for fewer than half of them, or raise max_digits"
        )
    rng = random.Random(seed)
    seen: set[int] = set()
    numbers: list[int] = []
    while len(numbers) < total:
        value = _draw_number(rng, max_digits, zero_probability)
        if value not in seen:
            seen.add(value)
            numbers.append(value)
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = [TranslationPair(n, number_to_english(n), number_to_chinese(n)) for n in numbers[start:start + size]]
        start += size
    return splits


# ----------------------------------------------------------------------------------------------------
# Token ids
# ----------------------------------------------------------------------------------------------------


class Vocabulary:
    """Tokens <-> ids, with three special tokens first: ``<pad>`` 0, ``<s>`` 1 (begin), ``</s>`` 2 (end).
    There is no ``<unk>``: an unknown token is an error that names the accepted tokens."""

    PAD, BOS, EOS = 0, 1, 2
    SPECIALS = ("<pad>", "<s>", "</s>")

    def __init__(self, tokens: Sequence[str], name: str = "tokens"):
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens) or set(tokens) & set(self.SPECIALS):
            raise ValueError("vocabulary tokens must be distinct and must not include the special tokens")
        self.name = name
        self.itos: list[str] = [*self.SPECIALS, *tokens]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str], *, bos: bool = False, eos: bool = True) -> list[int]:
        """Token list -> ids, optionally framed by ``<s>`` and ``</s>``."""
        ids = []
        for token in tokens:
            if token not in self.stoi or token in self.SPECIALS:
                accepted = " ".join(self.itos[len(self.SPECIALS):])
                raise ValueError(f"unknown {self.name} token {token!r}; accepted: {accepted}")
            ids.append(self.stoi[token])
        return [self.BOS] * bos + ids + [self.EOS] * eos

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Ids -> tokens, skipping ``<pad>`` and ``<s>`` and stopping at the first ``</s>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i in (self.PAD, self.BOS):
                continue
            out.append(self.itos[i])
        return out


SOURCE_VOCAB = Vocabulary(ENGLISH_WORDS, "English")
TARGET_VOCAB = Vocabulary(CHINESE_CHARACTERS, "Chinese")


def _pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [Vocabulary.PAD] * (width - len(r)) for r in rows], dtype=torch.long)


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------


class MultiHeadCrossAttention(MultiHeadSelfAttention):
    """Multi-head *cross*-attention: the queries come from the decoder, the keys and values from the
    encoder's output (the "memory"). Same projections as :class:`lightft.MultiHeadSelfAttention`.

    ``forward(x, memory, mask=None)``: ``x`` (batch, L_q, d_model), ``memory`` (batch, L_k, d_model),
    ``mask`` boolean, broadcastable to (batch, heads, L_q, L_k), e.g. ``padding_mask`` of the source.
    Returns ``(output, weights)``: (batch, L_q, d_model) and (batch, heads, L_q, L_k).
    """

    def forward(self, x: torch.Tensor, memory: torch.Tensor,  # type: ignore[override]
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        for name, t in (("x", x), ("memory", memory)):
            if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape[-1] != self.d_model:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name} must have shape (batch, seq_len, {self.d_model}), got {shape}")
        q = self._split_heads(self.query(x))
        k, v = self._split_heads(self.key(memory)), self._split_heads(self.value(memory))
        context, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, h, L_q, d/h), (B, h, L_q, L_k)
        b, _, length, _ = context.shape
        return self.out(context.transpose(1, 2).reshape(b, length, self.d_model)), weights


@dataclass(frozen=True)
class TranslatorConfig:
    """Size of a :class:`Translator`. ``max_length`` bounds source and target lengths in tokens."""

    d_model: int = 64
    num_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    max_length: int = 32

    def __post_init__(self) -> None:
        for name in ("d_model", "num_heads", "encoder_layers", "decoder_layers", "d_ff", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TranslatorConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


TRANSLATOR_CONFIGS: dict[str, TranslatorConfig] = {
    "tiny": TranslatorConfig(d_model=32, num_heads=2, encoder_layers=1, decoder_layers=1, d_ff=64),
    "small": TranslatorConfig(d_model=96, num_heads=4, encoder_layers=2, decoder_layers=2, d_ff=192),
}
"""The chapter's two sizes; pass a name or a :class:`TranslatorConfig` to :func:`train_translator`."""


class _FeedForward(nn.Sequential):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class EncoderLayer(nn.Module):
    """Pre-LayerNorm encoder layer: x + SelfAttention(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, c: TranslatorConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.self_attention = MultiHeadSelfAttention(c.d_model, c.num_heads)
        self.feed_forward = _FeedForward(c.d_model, c.d_ff, c.dropout)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.norm1(x), mask)[0])
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Pre-LayerNorm decoder layer: masked self-attention, cross-attention to the encoder, FFN."""

    def __init__(self, c: TranslatorConfig):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(c.d_model) for _ in range(3))
        self.self_attention = MultiHeadSelfAttention(c.d_model, c.num_heads)
        self.cross_attention = MultiHeadCrossAttention(c.d_model, c.num_heads)
        self.feed_forward = _FeedForward(c.d_model, c.d_ff, c.dropout)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor,
                memory_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = y + self.dropout(self.self_attention(self.norm1(y), self_mask)[0])
        attended, weights = self.cross_attention(self.norm2(y), memory, memory_mask)
        y = y + self.dropout(attended)
        return y + self.dropout(self.feed_forward(self.norm3(y))), weights


class Translator(nn.Module):
    """An encoder-decoder Transformer (Vaswani et al., 2017) in the pre-LayerNorm arrangement.

    ``forward(source_ids, target_in)`` -> logits ``(batch, L_t, target vocabulary)``: ``source_ids``
    (batch, L_s) are English token ids ending in ``</s>``, padded with 0; ``target_in`` (batch, L_t)
    are the Chinese ids *shifted right* (starting with ``<s>``), so position ``t`` predicts token ``t``.
    Embeddings are scaled by √d_model and added to learned position embeddings; the output layer shares
    its weights with the target embedding.
    """

    def __init__(self, config: TranslatorConfig | None = None):
        super().__init__()
        c = config or TranslatorConfig()
        if not isinstance(c, TranslatorConfig):
            raise TypeError(f"config must be a TranslatorConfig, got {type(c).__name__}")
        self.config = c
        self.source_vocab, self.target_vocab = SOURCE_VOCAB, TARGET_VOCAB
        self.source_embedding = nn.Embedding(len(SOURCE_VOCAB), c.d_model, padding_idx=Vocabulary.PAD)
        self.target_embedding = nn.Embedding(len(TARGET_VOCAB), c.d_model, padding_idx=Vocabulary.PAD)
        self.source_positions = nn.Embedding(c.max_length, c.d_model)
        self.target_positions = nn.Embedding(c.max_length, c.d_model)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.d_model, len(TARGET_VOCAB), bias=False)
        self.output.weight = self.target_embedding.weight  # weight tying
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _embed(self, ids: torch.Tensor, tokens: nn.Embedding, positions: nn.Embedding) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"token ids must be a (batch, seq_len) torch.long tensor, got "
                             f"{tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__}")
        if ids.shape[1] > self.config.max_length:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_length={self.config.max_length}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= tokens.num_embeddings):
            raise ValueError(f"token ids must be in [0, {tokens.num_embeddings}), got min {int(ids.min())}, max {int(ids.max())}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.dropout(tokens(ids) * math.sqrt(self.config.d_model) + positions(pos))

    def encode(self, source_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, L_s) ids -> memory (batch, L_s, d_model) and its mask (batch, 1, 1, L_s)."""
        mask = padding_mask(source_ids != Vocabulary.PAD)
        x = self._embed(source_ids, self.source_embedding, self.source_positions)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x), mask

    def decode(self, target_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
               return_attention: bool = False) -> Any:
        """Logits (batch, L_t, V) for the shifted target; with ``return_attention`` also the last
        decoder layer's cross-attention weights (batch, heads, L_t, L_s)."""
        length = target_in.shape[1]
        # Position t may look at target positions 0..t (causal) that are real tokens (padding).
        self_mask = causal_mask(length, device=target_in.device) & padding_mask(target_in != Vocabulary.PAD)
        y = self._embed(target_in, self.target_embedding, self.target_positions)
        weights = None
        for layer in self.decoder:
            y, weights = layer(y, memory, self_mask, memory_mask)
        logits = self.output(self.decoder_norm(y))
        return (logits, weights) if return_attention else logits

    def forward(self, source_ids: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        memory, memory_mask = self.encode(source_ids)
        return self.decode(target_in, memory, memory_mask)


# ----------------------------------------------------------------------------------------------------
# Training (teacher forcing)
# ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Run the block with ``threads`` CPU threads in torch (None: leave as is), restoring them after."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_pairs(pairs: Any, name: str = "pairs") -> list[tuple[str, str]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise TypeError(f"{name} must be a non-empty list of (english, chinese) pairs or TranslationPair, got {pairs!r:.80}")
    out = []
    for p in pairs:
        if isinstance(p, TranslationPair):
            out.append((p.english, p.chinese))
        elif isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str) for s in p):
            out.append((p[0], p[1]))
        else:
            raise TypeError(f"every item of {name} must be a TranslationPair or an (english, chinese) string pair, got {p!r}")
    return out


def _encode_pairs(pairs: list[tuple[str, str]], max_length: int) -> tuple[list[list[int]], list[list[int]]]:
    sources = [SOURCE_VOCAB.encode(english_tokens(e)) for e, _ in pairs]
    targets = [TARGET_VOCAB.encode(list(z), bos=True) for _, z in pairs]  # <s> ... </s>
    longest = max(max(map(len, sources)), max(map(len, targets)) - 1)
    if longest > max_length:
        raise ValueError(f"an example is {longest} tokens long, more than the model's max_length={max_length}")
    return sources, targets


@dataclass
class TrainedTranslator:
    """What :func:`train_translator` returns: the model (in eval mode), its loss history
    (``{"step", "epoch", "loss", "learning_rate"}`` per logged step), wall-clock training seconds,
    the parameter count and the settings."""

    model: Translator
    history: list[dict[str, float]]
    train_seconds: float
    parameters: int
    steps: int
    settings: dict[str, Any] = field(default_factory=dict)


def train_translator(
    pairs: Sequence[TranslationPair] | Sequence[tuple[str, str]],
    config: str | TranslatorConfig = "small",
    *,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    warmup: float = 0.05,
    label_smoothing: float = 0.1,
    weight_decay: float = 0.01,
    seed: int = 0,
    log_every: int = 20,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
) -> TrainedTranslator:
    """Train a :class:`Translator` from scratch with teacher forcing.

    At every step the decoder receives the *reference* Chinese prefix ``<s> y_1 … y_{t-1}`` and is
    trained to predict ``y_t`` (cross-entropy over all positions at once, padding ignored), never its
    own previous guesses. AdamW, linear warm-up over the first ``warmup`` share of steps, then cosine
    decay to 0. Deterministic for a given ``seed`` on a given machine and thread count.

    ``threads``: the CPU threads torch uses while training (restored afterwards; None leaves the
    setting alone). The default, 1, is the fastest for matrices this small: a second thread costs more
    in synchronisation than it saves, and on a busy machine a thread that loses its core stalls every
    operation it shares.
    """
    data = _check_pairs(pairs)
    if isinstance(config, str):
        if config not in TRANSLATOR_CONFIGS:
            raise ValueError(f"unknown config {config!r}; accepted: {sorted(TRANSLATOR_CONFIGS)} or a TranslatorConfig")
        config = TRANSLATOR_CONFIGS[config]
    if not isinstance(config, TranslatorConfig):
        raise TypeError(f"config must be a name {sorted(TRANSLATOR_CONFIGS)} or a TranslatorConfig, got {type(config).__name__}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("log_every", log_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must be a share of the steps in [0, 1), got {warmup!r}")
    sources, targets = _encode_pairs(data, config.max_length)
    with _torch_threads(threads):
        return _train(data, sources, targets, config, epochs, batch_size, learning_rate, warmup, label_smoothing,
                      weight_decay, seed, log_every, device)


def _train(data, sources, targets, config, epochs, batch_size, learning_rate, warmup, label_smoothing, weight_decay,
           seed, log_every, device) -> TrainedTranslator:
    torch.manual_seed(seed)
    device = torch.device(device)
    model = Translator(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay,
                                  betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total = epochs * steps_per_epoch
    warm = max(1, int(warmup * total))

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = nn.CrossEntropyLoss(ignore_index=Vocabulary.PAD, label_smoothing=label_smoothing)
    rng = random.Random(seed)
    history: list[dict[str, float]] = []
    order = list(range(len(data)))
    step, running, counted = 0, 0.0, 0
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            src = _pad([sources[j] for j in idx]).to(device)
            tgt = _pad([targets[j] for j in idx]).to(device)
            target_in, target_out = tgt[:, :-1], tgt[:, 1:]  # teacher forcing: shift right by one
            logits = model(src, target_in)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), target_out.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            running += loss.item()
            counted += 1
            if step % log_every == 0 or step == total:
                history.append({"step": step, "epoch": step / steps_per_epoch, "loss": running / counted,
                                "learning_rate": scheduler.get_last_lr()[0]})
                running, counted = 0.0, 0
    seconds = time.perf_counter() - start
    model.eval()
    settings = {"config": config, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "warmup": warmup, "label_smoothing": label_smoothing, "seed": seed, "train_examples": len(data)}
    parameters = sum(p.numel() for p in model.parameters())
    return TrainedTranslator(model, history, seconds, parameters, total, settings)


# ----------------------------------------------------------------------------------------------------
# Greedy decoding and scores
# ----------------------------------------------------------------------------------------------------


def _as_model(model: Any) -> Translator:
    if isinstance(model, TrainedTranslator):
        model = model.model
    if not isinstance(model, Translator):
        raise TypeError(f"expected a Translator or the TrainedTranslator from train_translator, got {type(model).__name__}")
    return model


@torch.no_grad()
def translate(model: Translator | TrainedTranslator, texts: Sequence[str], *, batch_size: int = 500,
              max_new_tokens: int | None = None, return_attention: bool = False, threads: int | None = 1) -> Any:
    """Greedy decoding: English texts -> Chinese strings.

    The encoder reads each source once; the decoder then starts from ``<s>`` and, one position at a
    time, appends the most probable next character, until every sentence has produced ``</s>`` or
    ``max_new_tokens`` (default: the model's ``max_length`` - 1) is reached. There is no key/value
    cache: each step reruns the decoder on the whole prefix, which is cheap for sequences this short.

    With ``return_attention=True`` returns ``(translations, weights)``, where ``weights[i]`` is the last
    decoder layer's cross-attention for text ``i``, a (heads, output length + 1, source length) tensor
    (the last row is the step that produced ``</s>``). ``threads`` as in :func:`train_translator`.
    """
    model = _as_model(model)
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError("texts must be a list of English strings (for one sentence, pass [text])")
    if not texts:
        return ([], []) if return_attention else []
    limit = max_new_tokens or model.config.max_length - 1
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: list[str] = []
    attentions: list[torch.Tensor] = []
    try:
        with _torch_threads(threads):
            for start in range(0, len(texts), batch_size):
                chunk = texts[start:start + batch_size]
                source = _pad([SOURCE_VOCAB.encode(english_tokens(t)) for t in chunk]).to(device)
                if source.shape[1] > model.config.max_length:
                    raise ValueError(f"a text is {source.shape[1]} tokens long, more than max_length={model.config.max_length}")
                memory, memory_mask = model.encode(source)
                out = torch.full((len(chunk), 1), Vocabulary.BOS, dtype=torch.long, device=device)
                done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
                weights = None
                for _ in range(limit):
                    logits, weights = model.decode(out, memory, memory_mask, return_attention=True)
                    nxt = logits[:, -1].argmax(-1)
                    nxt = torch.where(done, torch.full_like(nxt, Vocabulary.PAD), nxt)  # finished rows: pad
                    out = torch.cat([out, nxt[:, None]], dim=1)
                    done |= nxt == Vocabulary.EOS
                    if done.all():
                        break
                for row, ids in enumerate(out[:, 1:].tolist()):
                    tokens = TARGET_VOCAB.decode(ids)
                    results.append("".join(tokens))
                    if return_attention:
                        n_src = int((source[row] != Vocabulary.PAD).sum())
                        attentions.append(weights[row, :, :len(tokens) + 1, :n_src].cpu())
    finally:
        model.train(was_training)
    return (results, attentions) if return_attention else results


def _check_strings(hypotheses: Any, references: Any) -> tuple[list[str], list[str]]:
    for name, value in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(s, str) for s in value):
            raise TypeError(f"{name} must be a list of strings (one per sentence), got {value!r:.80}")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references; one reference per hypothesis")
    if not hypotheses:
        raise ValueError("no sentences to score")
    return list(hypotheses), list(references)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of sentences translated exactly right, in [0, 1] (after stripping outer whitespace)."""
    hyps, refs = _check_strings(hypotheses, references)
    return sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(refs)


def bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "zh") -> float:
    """Corpus BLEU (Papineni et al., 2002) from sacrebleu (Post, 2018), on a 0-100 scale.

    ``tokenize="zh"`` (sacrebleu's Chinese tokenizer) splits every Chinese character into its own
    token, so the n-grams are character n-grams; use ``"13a"`` for English output.
    """
    import sacrebleu

    hyps, refs = _check_strings(hypotheses, references)
    return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score)


def evaluate_translator(model: Translator | TrainedTranslator,
                        pairs: Sequence[TranslationPair] | Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Translate a split and score it: ``{"exact_match", "bleu", "examples", "seconds", "translations"}``."""
    data = _check_pairs(pairs)
    start = time.perf_counter()
    hyps = translate(model, [e for e, _ in data])
    seconds = time.perf_counter() - start
    refs = [z for _, z in data]
    return {"exact_match": exact_match(hyps, refs), "bleu": bleu(hyps, refs), "examples": len(data),
            "seconds": seconds, "translations": hyps}


# ----------------------------------------------------------------------------------------------------
# A real model, where the hub is reachable
# ----------------------------------------------------------------------------------------------------


def hub_translate(texts: Sequence[str], model_name: str = "Helsinki-NLP/opus-mt-en-zh", *,
                  revision: str | None = None, target_token: str | None = ">>cmn_Hans<<",
                  batch_size: int = 16, max_new_tokens: int = 128) -> list[str]:
    """Translate with a pretrained Marian model from the Hugging Face hub (beam search as configured
    by the model's generation config).

    ``opus-mt-en-zh`` serves several Chinese varieties and needs a target-language token such as
    ``>>cmn_Hans<<`` (Mandarin, simplified script) at the start of every sentence; pass
    ``target_token=None`` for a single-target model. Weights are loaded from safetensors only; where
    a repository's main branch holds only pickled weights, pass the ``revision`` of its safetensors
    conversion. Needs the ``sentencepiece`` package (preinstalled in Colab).

    Raises:
        HubUnreachableError: the hub cannot be reached (no network, or ``HF_HUB_OFFLINE=1``).
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of strings (for one sentence, pass [text])")
    if not hub_reachable():
        raise HubUnreachableError(
            f"{model_name!r} must be downloaded from the Hugging Face hub, which cannot be reached here "
            "(no network, or HF_HUB_OFFLINE=1); the chapter's own Translator runs offline instead"
        )
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_name, revision=revision)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_name, revision=revision, use_safetensors=True).eval()
    prefix = f"{target_token} " if target_token else ""
    out: list[str] = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer([prefix + t for t in texts[start:start + batch_size]], return_tensors="pt", padding=True)
            generated = model.generate(**batch, max_new_tokens=max_new_tokens)
            out += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return out
