"""Machine translation in miniature: English number words -> Chinese numerals, with a small encoder-decoder
Transformer trained from scratch. Chapter: "Machine translation in miniature" (``book/translation.md``).

No translation model or parallel corpus installs offline, so the module *generates* its data and trains its own model.
In nanoGPT's order: the data (:func:`number_to_english`, :func:`number_to_chinese`, :func:`make_translation_splits`,
:class:`Vocabulary`), the config, the layers (built on :mod:`lightft.attention`) and the model (:class:`Translator`),
the training loop (:func:`train_translator`), greedy decoding (:func:`translate`), the metrics (:func:`exact_match`,
sacrebleu's :func:`bleu`), and :func:`hub_translate`, a real Marian model where the hub is reachable."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.benchmark.utils.common import set_torch_threads

from lightft import checks, timing
from lightft.attention import MultiHeadSelfAttention, causal_mask, padding_mask, scaled_dot_product_attention
from lightft.hub import HubUnreachableError, hub_reachable


# ---------- the two languages ----------------------------------------------------------------------
MAX_NUMBER = 99_999_999  # the largest number both writers accept: one below 一亿 (10^8), a new Chinese unit
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
# every English token number_to_english can produce (the hyphen of "twenty-one" is a token)
ENGLISH_WORDS: tuple[str, ...] = tuple(_ONES + _TENS[2:] + ["hundred", "thousand", "million", "-"])
_DIGITS = "零一二三四五六七八九"
CHINESE_CHARACTERS: tuple[str, ...] = tuple(_DIGITS + "十百千万")  # every character number_to_chinese writes
# each character's pinyin: plot labels for fonts without Chinese glyphs (matplotlib's default)
PINYIN: dict[str, str] = dict(zip(CHINESE_CHARACTERS, (
    "líng", "yī", "èr", "sān", "sì", "wǔ", "liù", "qī", "bā", "jiǔ", "shí", "bǎi", "qiān", "wàn")))


def _check_number(n: Any) -> int:
    if checks.integer("n", n, 0) > MAX_NUMBER:
        raise ValueError(f"n must be an integer from 0 to {MAX_NUMBER:,}, got {n:,}")
    return n


def number_to_english(n: int) -> str:
    """The number in English words, American style: 305 -> "three hundred five" (no "and"),
    21 -> "twenty-one", 1_200_000 -> "one million two hundred thousand". Accepts 0 to :data:`MAX_NUMBER`."""
    if _check_number(n) == 0:
        return "zero"
    words: list[str] = []
    for group, scale in ((n // 10**6, ["million"]), (n // 1000 % 1000, ["thousand"]), (n % 1000, [])):
        hundreds, rest = divmod(group, 100)  # each group of three digits: "[x hundred] [tens[-ones]]"
        words += [_ONES[hundreds], "hundred"] if hundreds else []
        if rest:
            tens, ones = divmod(rest, 10)
            words.append(_ONES[rest] if rest < 20 else _TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
        words += scale if group else []
    return " ".join(words)


def _chinese_below_myriad(n: int, leading: bool) -> str:
    """1..9999 in Chinese; ``leading``: this group starts the number (so 10..19 drop the 一 of 一十)."""
    out, pending_zero = "", False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit == 0:
            pending_zero = bool(out)  # a zero matters only between non-zero digits
            continue
        skip_one = unit == "十" and digit == 1 and leading and not out  # 十五, not 一十五
        out, pending_zero = out + "零" * pending_zero + ("" if skip_one else _DIGITS[digit]) + unit, False
    return out


def number_to_chinese(n: int) -> str:
    """The number in Chinese numerals, grouped by 万 (10^4): 12_305 -> "一万二千三百零五", 15 -> "十五",
    110 -> "一百一十", 100_005 -> "十万零五". Uses 二, never 两. Accepts 0 to :data:`MAX_NUMBER`."""
    if _check_number(n) == 0:
        return "零"
    high, low = divmod(n, 10_000)
    out = _chinese_below_myriad(high, leading=True) + "万" if high else ""
    if low:  # 零 marks a gap before the low group: 一万零五, 十万零一百
        out += "零" * bool(high and low < 1000) + _chinese_below_myriad(low, leading=not high)
    return out


def english_tokens(text: str) -> list[str]:
    """English text -> tokens: words split on spaces, and "twenty-one" -> ["twenty", "-", "one"]."""
    checks.instance("text", text, str, "an English string such as 'twenty-one'")
    return text.lower().replace("-", " - ").split()


class TranslationPair(NamedTuple):
    """One parallel example: the number, its English words, its Chinese numerals."""
    number: int
    english: str
    chinese: str


def make_translation_splits(train: int = 6000, validation: int = 500, test: int = 1000, *, max_digits: int = 6,
                            zero_probability: float = 1 / 3, seed: int = 0) -> dict[str, list[TranslationPair]]:
    """``{"train", "validation", "test"}`` lists of :class:`TranslationPair` of *distinct* numbers.

    Each number: a digit count uniform from 1 to ``max_digits`` (else nine in ten numbers would have the most digits),
    a first digit 1-9, every further digit 0 with probability ``zero_probability`` (zeros are where the languages
    differ most: Chinese writes 零 for a gap, English nothing), else 1-9. Numbers already drawn are redrawn: no test
    number is seen in training."""
    sizes = dict(train=train, validation=validation, test=test)
    sizes = {name: checks.integer(name, size, 0) for name, size in sizes.items()}
    if checks.integer("max_digits", max_digits) > 8:
        raise ValueError(f"max_digits must be an integer from 1 to 8 (numbers up to {MAX_NUMBER:,}), got {max_digits}")
    checks.number("zero_probability", zero_probability, 0, 1, inclusive=True)
    total, base = sum(sizes.values()), 1 if zero_probability == 1 else 10 if zero_probability > 0 else 9
    possible = 9 * sum(base ** (d - 1) for d in range(1, max_digits + 1))  # distinct numbers of 1..max_digits digits
    if total > possible // 2:
        raise ValueError(f"{total:,} distinct numbers asked for; {max_digits} digits allow {possible // 2:,} at most")
    rng, numbers = random.Random(seed), {}  # a dict: distinct numbers in the order drawn
    while len(numbers) < total:
        digits, value = rng.randint(1, max_digits), rng.randint(1, 9)
        for _ in range(digits - 1):
            value = 10 * value + (0 if rng.random() < zero_probability else rng.randint(1, 9))
        numbers.setdefault(value, None)
    drawn = (TranslationPair(n, number_to_english(n), number_to_chinese(n)) for n in numbers)
    return {name: list(itertools.islice(drawn, size)) for name, size in sizes.items()}


# ---------- token ids ------------------------------------------------------------------------------
class Vocabulary:
    """Tokens <-> ids, with three special tokens first: ``<pad>`` 0, ``<s>`` 1 (begin), ``</s>`` 2 (end).
    There is no ``<unk>``: an unknown token is an error that names the accepted tokens."""
    PAD, BOS, EOS = 0, 1, 2
    SPECIALS = ("<pad>", "<s>", "</s>")

    def __init__(self, tokens: Sequence[str], name: str = "tokens"):
        if len(set(tokens)) != len(tokens) or set(tokens) & set(self.SPECIALS):
            raise ValueError("vocabulary tokens must be distinct and must not include the special tokens")
        self.name, self.itos = name, [*self.SPECIALS, *tokens]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str], *, bos: bool = False, eos: bool = True) -> list[int]:
        """Token list -> ids, optionally framed by ``<s>`` and ``</s>``."""
        if unknown := [t for t in tokens if self.stoi.get(t, 0) < len(self.SPECIALS)]:
            accepted = " ".join(self.itos[len(self.SPECIALS):])
            raise ValueError(f"unknown {self.name} token {unknown[0]!r}; accepted: {accepted}")
        return [self.BOS] * bos + [self.stoi[t] for t in tokens] + [self.EOS] * eos

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Ids -> tokens, skipping ``<pad>`` and ``<s>`` and stopping at the first ``</s>``."""
        ids = [int(i) for i in ids]
        ids = ids[:ids.index(self.EOS)] if self.EOS in ids else ids
        return [self.itos[i] for i in ids if i not in (self.PAD, self.BOS)]


SOURCE_VOCAB = Vocabulary(ENGLISH_WORDS, "English")
TARGET_VOCAB = Vocabulary(CHINESE_CHARACTERS, "Chinese")


def _pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:  # ragged id lists -> (batch, longest), 0 (<pad>)-padded
    return nn.utils.rnn.pad_sequence([torch.tensor(r, dtype=torch.long) for r in rows], batch_first=True)


# ---------- the model: config, layers, Translator --------------------------------------------------
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
            checks.integer(f"TranslatorConfig.{name}", getattr(self, name))
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        checks.number("dropout", self.dropout, 0, 1, inclusive=True)


TRANSLATOR_CONFIGS: dict[str, TranslatorConfig] = {  # the chapter's two sizes, by name for train_translator
    "tiny": TranslatorConfig(d_model=32, num_heads=2, encoder_layers=1, decoder_layers=1, d_ff=64),
    "small": TranslatorConfig(d_model=96, num_heads=4, encoder_layers=2, decoder_layers=2, d_ff=192),
}


class MultiHeadCrossAttention(MultiHeadSelfAttention):
    """Multi-head *cross*-attention: queries from the decoder x (B, L_q, d), keys and values from the
    encoder's output, the memory (B, L_k, d); ``mask`` boolean, broadcastable to (B, heads, L_q, L_k).
    Returns ``(output, weights)``: (B, L_q, d) and (B, heads, L_q, L_k)."""

    def forward(self, x: torch.Tensor, memory: torch.Tensor,  # type: ignore[override]
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_input("x", x)
        self._check_input("memory", memory)
        q = self._split_heads(self.query(x))  # (B, h, L_q, d/h)
        k, v = self._split_heads(self.key(memory)), self._split_heads(self.value(memory))  # (B, h, L_k, d/h)
        context, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, h, L_q, d/h), (B, h, L_q, L_k)
        b, _, length, _ = context.shape
        return self.out(context.transpose(1, 2).reshape(b, length, self.d_model)), weights


class Block(nn.Module):
    """A pre-LayerNorm Transformer layer: x + SelfAttention(LN(x)), in a decoder (``cross``) then
    x + CrossAttention(LN(x), memory), then x + FFN(LN(x)). ``forward`` returns x (B, L, d) and the
    cross-attention weights (B, h, L, L_s), None in an encoder layer."""

    def __init__(self, c: TranslatorConfig, cross: bool):
        super().__init__()
        d = c.d_model
        self.norm1, self.self_attention = nn.LayerNorm(d), MultiHeadSelfAttention(d, c.num_heads)
        self.norm_cross = nn.LayerNorm(d) if cross else None
        self.cross_attention = MultiHeadCrossAttention(d, c.num_heads) if cross else None
        self.norm2, self.dropout = nn.LayerNorm(d), nn.Dropout(c.dropout)
        self.feed_forward = nn.Sequential(nn.Linear(d, c.d_ff), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.d_ff, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, weights = x + self.dropout(self.self_attention(self.norm1(x), mask)[0]), None
        if self.cross_attention is not None:
            attended, weights = self.cross_attention(self.norm_cross(x), memory, memory_mask)
            x = x + self.dropout(attended)
        return x + self.dropout(self.feed_forward(self.norm2(x))), weights


class Translator(nn.Module):
    """An encoder-decoder Transformer (Vaswani et al., 2017), pre-LayerNorm. ``forward(source_ids,
    target_in)`` -> logits (B, L_t, V): ``source_ids`` (B, L_s) English ids ending in ``</s>``, 0-padded;
    ``target_in`` (B, L_t) the Chinese ids *shifted right* (from ``<s>``), so position t predicts token t.
    Embeddings are scaled by √d_model plus learned positions; the output layer is the target embedding."""

    def __init__(self, config: TranslatorConfig | None = None):
        super().__init__()
        c = self.config = checks.instance("config", config or TranslatorConfig(), TranslatorConfig,
                                          "a TranslatorConfig")
        self.source_embedding = nn.Embedding(len(SOURCE_VOCAB), c.d_model, padding_idx=Vocabulary.PAD)
        self.target_embedding = nn.Embedding(len(TARGET_VOCAB), c.d_model, padding_idx=Vocabulary.PAD)
        self.source_positions = nn.Embedding(c.max_length, c.d_model)
        self.target_positions = nn.Embedding(c.max_length, c.d_model)
        self.encoder = nn.ModuleList(Block(c, cross=False) for _ in range(c.encoder_layers))
        self.decoder = nn.ModuleList(Block(c, cross=True) for _ in range(c.decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.d_model, len(TARGET_VOCAB), bias=False)
        self.output.weight = self.target_embedding.weight  # weight tying
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _embed(self, ids: torch.Tensor, tokens: nn.Embedding, positions: nn.Embedding) -> torch.Tensor:
        if ids.dim() != 2 or ids.shape[1] > self.config.max_length:
            raise ValueError(f"token ids must be (batch, seq_len <= {self.config.max_length}), got {tuple(ids.shape)}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.dropout(tokens(ids) * math.sqrt(self.config.d_model) + positions(pos))  # (B, L, d)

    def encode(self, source_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, L_s) ids -> memory (batch, L_s, d_model) and its mask (batch, 1, 1, L_s)."""
        mask = padding_mask(source_ids != Vocabulary.PAD)
        x = self._embed(source_ids, self.source_embedding, self.source_positions)
        for layer in self.encoder:
            x, _ = layer(x, mask)
        return self.encoder_norm(x), mask

    def decode(self, target_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
               return_attention: bool = False) -> Any:
        """Logits (batch, L_t, V) for the shifted target; with ``return_attention`` also the last
        decoder layer's cross-attention weights (batch, heads, L_t, L_s)."""
        # Position t may look at target positions 0..t (causal) that are real tokens (padding).
        self_mask = causal_mask(target_in.shape[1], device=target_in.device) & padding_mask(target_in != Vocabulary.PAD)
        y = self._embed(target_in, self.target_embedding, self.target_positions)
        for layer in self.decoder:
            y, weights = layer(y, self_mask, memory, memory_mask)
        logits = self.output(self.decoder_norm(y))
        return (logits, weights) if return_attention else logits

    def forward(self, source_ids: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        return self.decode(target_in, *self.encode(source_ids))


# ---------- training (teacher forcing) -------------------------------------------------------------
def _threads(threads: int | None):  # torch's CPU threads in a ``with`` block (None: as they are), restored after
    return set_torch_threads(torch.get_num_threads() if threads is None else checks.integer("threads", threads))


def _pairs(pairs: Any) -> list[tuple[str, str]]:  # TranslationPairs or (english, chinese) -> (english, chinese)
    accepted = "a TranslationPair or an (english, chinese) pair of strings"
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise TypeError(f"pairs must be a non-empty list, each item {accepted}; got {pairs!r:.80}")
    out = [(p.english, p.chinese) if isinstance(p, TranslationPair) else p for p in pairs]
    for p in out:
        if not (isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str) for s in p)):
            raise TypeError(f"every item of pairs must be {accepted}, got {p!r}")
    return [tuple(p) for p in out]


@dataclass
class TrainedTranslator:
    """What :func:`train_translator` returns: the model (in eval mode), its loss history
    (``{"step", "epoch", "loss", "learning_rate"}`` per logged step), wall-clock training seconds,
    the parameter count, the number of optimizer steps and the settings."""
    model: Translator
    history: list[dict[str, float]]
    train_seconds: float
    parameters: int
    steps: int
    settings: dict[str, Any] = field(default_factory=dict)


def train_translator(pairs: Sequence[TranslationPair] | Sequence[tuple[str, str]],
                     config: str | TranslatorConfig = "small", *, epochs: int = 10, batch_size: int = 64,
                     learning_rate: float = 3e-3, warmup: float = 0.05, label_smoothing: float = 0.1,
                     weight_decay: float = 0.01, seed: int = 0, log_every: int = 20,
                     device: str | torch.device = "cpu", threads: int | None = 1) -> TrainedTranslator:
    """Train a :class:`Translator` from scratch with teacher forcing: the decoder reads the *reference*
    prefix ``<s> y_1 … y_{t-1}`` and learns to predict ``y_t`` (cross-entropy over all positions at once,
    padding ignored), never its own guesses. AdamW, linear warm-up over the first ``warmup`` share of the
    steps, then cosine decay to 0; deterministic for a ``seed``, machine and thread count. ``threads``:
    torch's CPU threads meanwhile (None: as they are); 1 is fastest for matrices this small (a second
    thread costs more in synchronisation than it saves, and one that loses its core stalls all)."""
    data = _pairs(pairs)
    if isinstance(config, str):
        config = TRANSLATOR_CONFIGS[checks.choice("config", config, TRANSLATOR_CONFIGS)]
    checks.instance("config", config, TranslatorConfig, f"a name in {sorted(TRANSLATOR_CONFIGS)} or a TranslatorConfig")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("log_every", log_every)):
        checks.integer(name, value)
    checks.number("learning_rate", learning_rate, 0)
    checks.number("warmup", warmup, 0, 1, inclusive=True)
    sources = [SOURCE_VOCAB.encode(english_tokens(e)) for e, _ in data]  # words ... </s>
    targets = [TARGET_VOCAB.encode(list(z), bos=True) for _, z in data]  # <s> characters ... </s>
    if (longest := max(max(map(len, sources)), max(map(len, targets)) - 1)) > config.max_length:
        raise ValueError(f"an example is {longest} tokens long, more than the model's max_length={config.max_length}")
    settings = {"config": config, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "warmup": warmup, "label_smoothing": label_smoothing, "weight_decay": weight_decay, "seed": seed,
                "log_every": log_every, "train_examples": len(data)}
    torch.manual_seed(seed)
    model, history = Translator(config).to(device), []
    with _threads(threads):
        seconds = timing.time_calls(lambda: history.extend(_fit(model, sources, targets, settings, device)),
                                    repeats=1, warmup=0, device=device)[0]
    parameters = sum(p.numel() for p in model.parameters())  # the tied output weight counted once
    return TrainedTranslator(model.eval(), history, seconds, parameters, history[-1]["step"], settings)


def _fit(model: Translator, sources: list[list[int]], targets: list[list[int]], s: dict[str, Any],
         device: str | torch.device) -> list[dict[str, float]]:
    """The training loop; returns the mean loss every ``log_every`` steps (and at the last step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=s["learning_rate"], weight_decay=s["weight_decay"],
                                  betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(len(sources) / s["batch_size"])
    total = s["epochs"] * steps_per_epoch
    warm = max(1, int(s["warmup"] * total))

    def lr_factor(step: int) -> float:  # linear warm-up over ``warm`` steps, then cosine decay to 0
        decayed = 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
        return (step + 1) / warm if step < warm else decayed

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    loss_fn = nn.CrossEntropyLoss(ignore_index=Vocabulary.PAD, label_smoothing=s["label_smoothing"])
    rng, order, history, running, step = random.Random(s["seed"]), list(range(len(sources))), [], [], 0
    model.train()
    for _ in range(s["epochs"]):
        rng.shuffle(order)
        for i in range(0, len(order), s["batch_size"]):
            batch = order[i:i + s["batch_size"]]
            src = _pad([sources[j] for j in batch]).to(device)  # (B, L_s)
            tgt = _pad([targets[j] for j in batch]).to(device)  # (B, 1 + L_t): <s> y_1 ... y_T </s>
            logits = model(src, tgt[:, :-1])  # (B, L_t, V): teacher forcing, the input shifted right by one
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            running.append(loss.item())
            if step % s["log_every"] == 0 or step == total:
                history.append({"step": step, "epoch": step / steps_per_epoch, "loss": sum(running) / len(running),
                                "learning_rate": scheduler.get_last_lr()[0]})
                running = []
    return history


# ---------- greedy decoding ------------------------------------------------------------------------
def _sentences(name: str, value: Any, language: str = "") -> list[str]:  # a bare string is one sentence: refused
    if isinstance(value, str):
        raise TypeError(f"{name} must be a list of {language}strings; for one sentence, pass [text]")
    return checks.texts(name, value, allow_empty=True)


def _greedy(model: Translator, source: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L_s) source ids -> output ids (B, 1 + steps) from ``<s>``, and the last decoder layer's
    cross-attention at the last step (B, heads, steps, L_s). No key/value cache: each step reruns the
    decoder on the whole prefix, which is cheap for sequences this short."""
    memory, memory_mask = model.encode(source)
    out = torch.full((len(source), 1), Vocabulary.BOS, dtype=torch.long, device=source.device)
    done = torch.zeros(len(source), dtype=torch.bool, device=source.device)
    for _ in range(limit):
        logits, weights = model.decode(out, memory, memory_mask, return_attention=True)
        nxt = logits[:, -1].argmax(-1).masked_fill(done, Vocabulary.PAD)  # (B,); finished rows get padding
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= nxt == Vocabulary.EOS
        if done.all():
            break
    return out, weights


@torch.no_grad()
def translate(model: Translator | TrainedTranslator, texts: Sequence[str], *, batch_size: int = 500,
              max_new_tokens: int | None = None, return_attention: bool = False, threads: int | None = 1) -> Any:
    """Greedy decoding, English texts -> Chinese strings: the decoder starts from ``<s>`` and appends
    the most probable next character until every text has produced ``</s>`` or ``max_new_tokens``
    (default: the model's ``max_length`` - 1). With ``return_attention=True`` returns ``(translations,
    weights)``, ``weights[i]`` the last decoder layer's cross-attention for text i (heads, output length
    + 1, source length; the last row made ``</s>``). ``threads`` as in :func:`train_translator`."""
    model = model.model if isinstance(model, TrainedTranslator) else model
    checks.instance("model", model, Translator, "a Translator or the TrainedTranslator from train_translator")
    texts = _sentences("texts", texts, "English ")
    device, was_training, results, attentions = next(model.parameters()).device, model.training, [], []
    try:
        with _threads(threads):
            for start in range(0, len(texts), batch_size):
                batch = texts[start:start + batch_size]
                source = _pad([SOURCE_VOCAB.encode(english_tokens(t)) for t in batch]).to(device)  # (B, L_s)
                out, weights = _greedy(model.eval(), source, max_new_tokens or model.config.max_length - 1)
                for row, ids in enumerate(out[:, 1:].tolist()):
                    tokens = TARGET_VOCAB.decode(ids)
                    results.append("".join(tokens))
                    if return_attention:  # (heads, output length + 1, source length without padding)
                        attentions.append(weights[row, :, :len(tokens) + 1, :int((source[row] != 0).sum())].cpu())
    finally:
        model.train(was_training)
    return (results, attentions) if return_attention else results


# ---------- metrics --------------------------------------------------------------------------------
def _scored(hypotheses: Any, references: Any) -> tuple[list[str], list[str]]:
    hyps, refs = _sentences("hypotheses", hypotheses), _sentences("references", references)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references; one reference per hypothesis")
    if not hyps:
        raise ValueError("no sentences to score")
    return hyps, refs


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of sentences translated exactly right, in [0, 1] (after stripping outer whitespace)."""
    hyps, refs = _scored(hypotheses, references)
    return sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(refs)


def bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "zh") -> float:
    """Corpus BLEU (Papineni et al., 2002) from sacrebleu (Post, 2018), 0-100. ``tokenize="zh"`` makes
    every Chinese character a token (character n-grams); use ``"13a"`` for English output."""
    import sacrebleu
    hyps, refs = _scored(hypotheses, references)
    return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score)


def evaluate_translator(model: Translator | TrainedTranslator,
                        pairs: Sequence[TranslationPair] | Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Translate a split and score it: ``{"exact_match", "bleu", "examples", "seconds", "translations"}``."""
    english, refs = map(list, zip(*_pairs(pairs)))
    hyps: list[str] = []
    seconds = timing.time_calls(lambda: hyps.extend(translate(model, english)), repeats=1, warmup=0)[0]
    return {"exact_match": exact_match(hyps, refs), "bleu": bleu(hyps, refs), "examples": len(refs),
            "seconds": seconds, "translations": hyps}


# ---------- a real model, where the hub is reachable -----------------------------------------------
def hub_translate(texts: Sequence[str], model_name: str = "Helsinki-NLP/opus-mt-en-zh", *,
                  revision: str | None = None, target_token: str | None = ">>cmn_Hans<<",
                  batch_size: int = 16, max_new_tokens: int = 128) -> list[str]:
    """Translate with a pretrained Marian model from the Hugging Face hub (its generation config's beam
    search). ``opus-mt-en-zh`` serves several Chinese varieties and needs a target token such as
    ``>>cmn_Hans<<`` (Mandarin, simplified) before every sentence; ``target_token=None`` for a
    single-target model. Safetensors only: where a main branch holds only pickles, pass the ``revision``
    of its safetensors conversion. Needs ``sentencepiece`` (in Colab). Raises
    :class:`lightft.HubUnreachableError` where the hub cannot be reached (no network, HF_HUB_OFFLINE=1)."""
    texts = _sentences("texts", texts)
    if not hub_reachable():
        raise HubUnreachableError(f"{model_name!r} is on the Hugging Face hub, which cannot be reached here")
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_name, revision=revision)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_name, revision=revision, use_safetensors=True).eval()
    prefix, out = f"{target_token} " if target_token else "", []
    for start in range(0, len(texts), batch_size):  # (generate() itself runs without gradients)
        batch = tokenizer([prefix + t for t in texts[start:start + batch_size]], return_tensors="pt", padding=True)
        out += tokenizer.batch_decode(model.generate(**batch, max_new_tokens=max_new_tokens), skip_special_tokens=True)
    return out
