"""Benchmark: the LLM part's cost figures (SFT throughput and MFU, generation with and without the KV cache).

Run from the repository root (offline is fine: the LLM and the data are embedded; ``make llm-weights``
converts the weights once, or the first run does, in about 35 s):

    python benchmarks/llm.py                          # the defaults: about 4 minutes on a 2-core CPU
    python benchmarks/llm.py --steps 5 --new-tokens 128   # more timed steps, longer generations
    python benchmarks/llm.py --skip-full              # without the full fine-tuning row

What it measures (:func:`benchmark_llm`), on SmolLM2-135M-Instruct in fp32 (no bf16: it is emulated, so
slow, on a CPU without bf16 instructions), on a GPU when there is one:

* **SFT throughput**: ``--steps`` timed AdamW steps after one warm-up step
  (``lightft.measure.measure_training``), at batch ``--batch-size`` (8) of real Rotten Tomatoes SFT
  examples (``lightft.llm.sentiment_prompt`` + label word, ``lightft.llm.sft_examples`` with the loss on
  the answer only) cut to their last ``--seq-len`` (48) tokens, so the answer stays and most batches are
  exactly 8 x 48; for LoRA (peft, r=8, alpha=16, on ``q_proj``, ``v_proj``, as book/lora.md compares it),
  QLoRA (the same adapter on the NF4 base from ``load_llm(quantize="nf4")``) and full fine-tuning of all
  parameters. Tokens/s and examples/s, the process's peak memory (``lightft.timing.PeakMemory``: RSS on a
  CPU) and the part above the level at the start (gradients, optimizer state, activations).
* **MFU** = tokens/s (real tokens, padding not counted) x ``measure.training_flops_per_token(model, seq_len)`` / ``measure.peak_matmul_flops
  ("fp32")``. That counts ``6 N + 12 L s h`` per token with ``N`` the non-embedding parameters (106 M:
  the tied output layer, 28 M weights whose product runs at every position, is not counted, so the
  true work is larger) and the attention products. For LoRA and QLoRA ``N`` is the frozen base plus the
  adapter: the backward pass still flows through the frozen base (2 N FLOPs for the activations'
  gradients) but computes no weight gradients for it (the other 2 N), so 6 N is an upper bound on the
  work done there and their MFU is an upper bound too; for QLoRA the dequantization of the NF4 blocks
  is not counted either (the products run in fp32 after it).
* **Generation**: greedy, exactly ``--new-tokens`` (64) new tokens (``min_new_tokens``) for one chat
  prompt and for 8, with ``use_cache=True`` and ``use_cache=False`` (``model.generate`` keyword, as in
  transformers 5): seconds per generated token (per step, prefill included), tokens/s (new tokens of
  every row), and the ratio without / with the cache. One untimed 2-token run warms up first.

Prints a plain-text table, then one JSON line with the same numbers. ``--help`` lists the options; bad
input prints one line and exits with status 2, before anything is loaded.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from typing import Any

import torch

import lightft
from lightft import checks, llm, measure, timing

MiB = 2**20
ANIMALS = ("cat", "dog", "horse", "owl", "fox", "bear", "mouse", "whale")   # the batch's 8 chat prompts


def sft_batches(tokenizer, *, batches: int, batch_size: int, seq_len: int) -> list[dict[str, torch.Tensor]]:
    """``batches`` padded batches of real Rotten Tomatoes SFT examples, each at most ``(batch_size, seq_len)``."""
    train = lightft.load_dataset("rotten_tomatoes")["train"].select(range(batches * batch_size))
    examples = llm.sft_examples(tokenizer, [llm.sentiment_prompt(tokenizer, t) for t in train["text"]],
                                [llm.LABEL_WORDS[y] for y in train["label"]], max_length=seq_len)
    collate = llm.CompletionCollator(tokenizer.pad_token_id)
    return [collate(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]


def _train_row(name: str, model, batches, *, steps: int, peak: float) -> dict[str, Any]:
    t = measure.measure_training(model, batches, steps=steps, warmup=1, restore=False)
    width = max(b["input_ids"].shape[1] for b in batches)
    flops = measure.training_flops_per_token(model, width)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"setting": name, "trainable": trainable, "seq_len": width, "steps": steps,
            "tokens_per_s": round(t.tokens_per_s, 1), "examples_per_s": round(t.examples_per_s, 2),
            "seconds_per_step": round(t.seconds / steps, 2), "peak_memory_mib": round(t.peak_memory_bytes / MiB),
            "memory_increase_mib": round(t.memory_increase_bytes / MiB), "gflops_per_token": round(flops / 1e9, 3),
            "mfu": round(measure.model_flops_utilisation(t.tokens_per_s, flops, peak), 4)}


def _generation_rows(model, tokenizer, new_tokens: int) -> list[dict[str, Any]]:
    """Greedy generation of ``new_tokens`` tokens at batch 1 and 8, with and without the KV cache."""
    rows = []
    for prompts in ([llm.chat_prompt(tokenizer, "Tell me a story about a cat.")],
                    [llm.chat_prompt(tokenizer, f"Tell me a story about a {a}.") for a in ANIMALS]):
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False,
                          return_token_type_ids=False).to(model.device)

        def run(cache: bool, n: int) -> None:
            with torch.no_grad():
                model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=cache,
                               pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)

        seconds = {}
        for cache in (True, False):
            run(cache, 2)                                                        # warm-up, untimed
            seconds[cache], = timing.time_calls(lambda: run(cache, new_tokens), repeats=1, warmup=0,
                                                device=model.device)
            rows.append({"batch": len(prompts), "use_cache": cache, "prompt_tokens": batch["input_ids"].shape[1],
                         "new_tokens": new_tokens, "seconds": round(seconds[cache], 2),
                         "ms_per_token": round(1000 * seconds[cache] / new_tokens, 1),
                         "tokens_per_s": round(len(prompts) * new_tokens / seconds[cache], 1)})
        rows[-1]["slowdown_without_cache"] = round(seconds[False] / seconds[True], 2)
    return rows


def benchmark_llm(model: str = "smollm2-135m-instruct", *, steps: int = 3, new_tokens: int = 64, batch_size: int = 8,
                  seq_len: int = 48, full: bool = True) -> dict[str, Any]:
    """SFT throughput and MFU (LoRA, QLoRA, full fine-tuning) and generation speed with and without the
    KV cache; a JSON-friendly dict with ``hardware``, ``peak_gflops``, ``sft`` and ``generation`` (rows)."""
    checks.integer("steps", steps)
    checks.integer("new_tokens", new_tokens)
    checks.integer("batch_size", batch_size)
    checks.integer("seq_len", seq_len, 8)
    from peft import LoraConfig, get_peft_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    peak = measure.peak_matmul_flops("fp32", size=2048 if device == "cuda" else 1024)

    def load(**kwargs):
        gc.collect()
        net, tokenizer = llm.load_llm(model, **kwargs)
        return (net if kwargs else net.to(device)), tokenizer

    base, tokenizer = load()
    out: dict[str, Any] = {"hardware": lightft.hardware_summary(), "device": device, "model": model,
                           "parameters": base.num_parameters(), "precision": "fp32", "batch_size": batch_size,
                           "peak_gflops": {"fp32": round(peak / 1e9, 1)}}
    out["generation"] = _generation_rows(base, tokenizer, new_tokens)
    batches = sft_batches(tokenizer, batches=steps + 1, batch_size=batch_size, seq_len=seq_len)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    out["sft"] = [_train_row("LoRA r=8 (q, v)", get_peft_model(base, lora), batches, steps=steps, peak=peak)]
    del base
    out["sft"].append(_train_row("QLoRA r=8 (q, v), NF4 base", get_peft_model(load(quantize="nf4")[0], lora),
                                 batches, steps=steps, peak=peak))
    if full:
        out["sft"].append(_train_row("full fine-tuning", load()[0], batches, steps=steps, peak=peak))
    gc.collect()
    return out


def format_benchmark(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`benchmark_llm`'s result (the JSON holds the same numbers)."""
    lines = [f"hardware: {result['hardware']}", f"model: {result['model']} ({result['parameters'] / 1e6:.1f} M "
             f"parameters, {result['precision']}), peak matmul fp32 {result['peak_gflops']['fp32']:.0f} GFLOP/s",
             f"SFT, batch {result['batch_size']} of real Rotten Tomatoes examples (MFU: 6N + 12Lsh per token):",
             f"  {'setting':28s} {'trainable':>11s} {'seq':>4s} {'tok/s':>7s} {'ex/s':>6s} {'s/step':>7s} "
             f"{'peak MiB':>9s} {'+MiB':>6s} {'MFU':>6s}"]
    for r in result["sft"]:
        lines.append(f"  {r['setting']:28s} {r['trainable']:11,d} {r['seq_len']:4d} {r['tokens_per_s']:7.1f} "
                     f"{r['examples_per_s']:6.2f} {r['seconds_per_step']:7.2f} {r['peak_memory_mib']:9,d} "
                     f"{r['memory_increase_mib']:6,d} {r['mfu']:6.1%}")
    lines += ["greedy generation (prefill included):",
              f"  {'batch':>5s} {'KV cache':8s} {'prompt':>6s} {'new':>4s} {'seconds':>8s} {'ms/token':>9s} "
              f"{'tok/s':>7s} {'slower without':>14s}"]
    for r in result["generation"]:
        ratio = f"{r['slowdown_without_cache']:13.2f}x" if "slowdown_without_cache" in r else f"{'':14s}"
        lines.append(f"  {r['batch']:5d} {'on' if r['use_cache'] else 'off':8s} {r['prompt_tokens']:6d} "
                     f"{r['new_tokens']:4d} {r['seconds']:8.2f} {r['ms_per_token']:9.1f} {r['tokens_per_s']:7.1f} "
                     f"{ratio}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as the lightft CLI
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchmarks/llm.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="'smollm2-135m-instruct' (embedded), a saved folder, or a hub name (needs network)")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per SFT row, after 1 warm-up")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per generation row")
    parser.add_argument("--batch-size", type=int, default=8, help="SFT examples per step")
    parser.add_argument("--seq-len", type=int, default=48, help="SFT tokens per example at most (the tail is kept)")
    parser.add_argument("--skip-full", action="store_true", help="no full fine-tuning row")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, print the table then one JSON line; 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        if not args.model:
            raise ValueError("--model must not be empty")
        for name in ("steps", "new_tokens", "batch_size"):     # refused before anything is loaded
            checks.integer(name, getattr(args, name))
        checks.integer("seq_len", args.seq_len, 8)
        result = benchmark_llm(args.model, steps=args.steps, new_tokens=args.new_tokens, batch_size=args.batch_size,
                               seq_len=args.seq_len, full=not args.skip_full)
    except (ValueError, TypeError, OSError, ModuleNotFoundError) as err:
        print(f"benchmarks/llm.py: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    print(format_benchmark(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
