"""Benchmark: torch fp32 / int8 dynamic against ONNX Runtime fp32 / int8 dynamic, same model, same sentences.

Run from the repository root (offline is fine: the model and data are embedded):

    python benchmarks/inference.py                                # embedded MiniLM-L6 (random head), 256 test sentences
    python benchmarks/inference.py --model runs/minilm/best       # a fine-tuned folder (lightft finetune --output ...)
    python -m lightft bench --suite inference [same options]      # the same script, from the CLI

What it measures (:func:`benchmark_inference`), on the CPU, for four runtimes of one model: torch fp32,
torch int8 dynamic (``lightft.strategies.quantize_int8``), ONNX Runtime fp32 and ONNX Runtime int8 dynamic
(``lightft.strategies.export_onnx`` + ``OnnxClassifier``; the session uses as many threads as torch):
the latency of one sentence (median of ``--repeats`` interleaved calls, ``lightft.latency.compare_latency``,
at the median token length of the sentences), the throughput at ``--batch-size`` over the ``--limit`` test
sentences (``lightft.measure.measure_inference``), the test accuracy, the agreement of the predictions with
torch fp32, and the file size. The embedded ``--model minilm-l6`` has a random classification head: its accuracy means
nothing, and only the agreement with torch fp32 is reported. ``--help`` lists the options; bad input
prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import lightft
from lightft import checks, latency, measure, strategies


def benchmark_inference(model: str = "minilm-l6", data: str = "rotten_tomatoes", *, limit: int = 256,
                        batch_size: int = 32, max_length: int = 64, repeats: int = 50, seed: int = 0) -> dict[str, Any]:
    """Time and score the four runtimes on the first ``limit`` test sentences; a JSON-friendly dict with
    ``hardware``, ``threads``, ``trained_head``, ``sentences``, ``latency_seq_len`` and ``rows`` (one per runtime)."""
    for name, value in (("limit", limit), ("batch_size", batch_size), ("repeats", repeats)):
        checks.integer(name, value)
    checks.integer("max_length", max_length, 8)
    trained = Path(model).is_dir()  # a saved folder is taken as fine-tuned; the embedded (or a hub) head is random
    dataset, tokenizer = lightft.load_dataset(data, seed=seed), lightft.load_tokenizer(model)
    texts, labels = dataset["test"]["text"][:limit], dataset["test"]["label"][:limit]
    batches = measure.text_batches(tokenizer, texts, labels, batch_size=batch_size, max_length=max_length)
    seq_len = int(statistics.median(int(m.sum()) for b in batches for m in b["attention_mask"]))
    fp32 = lightft.load_model(model, seed=seed).cpu().eval()
    with tempfile.TemporaryDirectory(prefix="lightft-inference-") as scratch:
        files = {q: strategies.export_onnx(fp32, Path(scratch, f"{q}.onnx"), max_length=max_length,
                                           quantize=q == "int8") for q in ("fp32", "int8")}
        int8 = strategies.quantize_int8(fp32)
        models = {"torch fp32": fp32, "torch int8 dynamic": int8, "ONNX Runtime fp32": strategies.OnnxClassifier(
            files["fp32"]), "ONNX Runtime int8 dynamic": strategies.OnnxClassifier(files["int8"])}
        sizes = [strategies.saved_size(fp32), strategies.saved_size(int8), *(f.stat().st_size for f in files.values())]
        single = latency.compare_latency(models, batch_size=1, seq_len=seq_len, repeats=repeats, warmup=3, seed=seed)
        scored = {name: measure.batch_accuracy(m, batches) for name, m in models.items()}
        agree = {name: float((p == scored["torch fp32"][1]).float().mean()) for name, (_, p) in scored.items()}
        rows = [{"runtime": name, "latency_ms": round(single[name].ms_per_batch, 2),
                 "examples_per_s": round(measure.measure_inference(m, batches).examples_per_s, 1),
                 "accuracy": round(scored[name][0], 4) if trained else None,
                 "agreement_with_torch_fp32": round(agree[name], 4),
                 "size_mib": round(size / 2**20, 1)} for (name, m), size in zip(models.items(), sizes)]
    return {"hardware": lightft.hardware_summary(), "threads": torch.get_num_threads(), "model": model, "data": data,
            "trained_head": trained, "sentences": len(texts), "batch_size": batch_size, "max_length": max_length,
            "latency_seq_len": seq_len, "latency_repeats": repeats, "rows": rows}


def format_benchmark(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`benchmark_inference`'s result (the JSON holds the same numbers)."""
    lines = [f"hardware: {result['hardware']} ({result['threads']} threads for torch and ONNX Runtime alike)",
             f"model: {result['model']}, {result['sentences']} {result['data']} test sentences, max length "
             f"{result['max_length']}; latency: batch 1, {result['latency_seq_len']} tokens (their median), "
             f"median of {result['latency_repeats']} interleaved calls"]
    if not result["trained_head"]:
        lines.append("note: the embedded model's classification head is random (not fine-tuned): accuracy is not "
                     "reported, only agreement with torch fp32; pass --model a fine-tuned folder")
    lines.append(f"  {'runtime':26s} {'1 sentence ms':>13s} {'ex/s @' + str(result['batch_size']):>10s} "
                 f"{'accuracy':>8s} {'agree fp32':>10s} {'size MiB':>8s}")
    for r in result["rows"]:
        accuracy = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        lines.append(f"  {r['runtime']:26s} {r['latency_ms']:13.2f} {r['examples_per_s']:10.1f} {accuracy:>8s} "
                     f"{r['agreement_with_torch_fp32']:10.3f} {r['size_mib']:8.1f}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as the lightft CLI
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchmarks/inference.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm-l6",
                        help="'minilm-l6' (embedded, random head) or a fine-tuned model folder")
    parser.add_argument("--data", default="rotten_tomatoes",
                        help="a dataset name or a .csv/.jsonl file with text,label")
    parser.add_argument("--limit", type=int, default=256, help="test sentences to time and score")
    parser.add_argument("--batch-size", type=int, default=32, help="batch of the throughput measurement")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per sentence at most")
    parser.add_argument("--repeats", type=int, default=50, help="timed one-sentence calls per runtime")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, print the table then one JSON line; 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        if not args.model or not args.data:
            raise ValueError("--model and --data must not be empty")
        result = benchmark_inference(args.model, args.data, limit=args.limit, batch_size=args.batch_size,
                                     max_length=args.max_length, repeats=args.repeats, seed=args.seed)
    except (ValueError, TypeError, OSError, ModuleNotFoundError) as err:
        print(f"benchmarks/inference.py: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    print(format_benchmark(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
