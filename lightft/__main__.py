"""Command line: ``python -m lightft finetune | predict | bench`` (also installed as ``lightft``).

Chapter: "The fine-tuning project". Bad input prints one line to stderr and exits with status 2,
with no traceback and nothing overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lightft", description="Lightweight fine-tuning of transformer encoders.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ft = sub.add_parser("finetune", help="fine-tune a model on a dataset and save the best checkpoint",
                        description="Fine-tune, evaluate each epoch, keep the best checkpoint, print one JSON "
                                    "line of final test metrics.")
    ft.add_argument("--model", default="minilm-l6",
                    help="'minilm-l6' (embedded), a saved model folder, or a hub name (needs network)")
    ft.add_argument("--data", default="rotten_tomatoes",
                    help="'rotten_tomatoes', 'imdb', 'tweets', a .csv/.jsonl file with text,label, or a hub name")
    ft.add_argument("--output", required=True, help="folder for checkpoints and the best model")
    ft.add_argument("--max-length", type=_positive_int, default=128)
    ft.add_argument("--batch-size", type=_positive_int, default=16)
    ft.add_argument("--epochs", type=_positive_float, default=2.0)
    ft.add_argument("--learning-rate", type=_positive_float, default=5e-5)
    ft.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    ft.add_argument("--padding", choices=["dynamic", "max_length"], default="dynamic")
    ft.add_argument("--train-limit", type=_positive_int, default=None, help="use only N training examples")
    ft.add_argument("--eval-limit", type=_positive_int, default=None, help="use only N validation/test examples")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    ft.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    ft.add_argument("--quiet", action="store_true", help="no progress bars")

    pr = sub.add_parser("predict", help="classify texts with a fine-tuned model",
                        description="Print one JSON line per text: label and class probabilities.")
    pr.add_argument("--model", required=True, help="a folder written by 'lightft finetune'")
    pr.add_argument("texts", nargs="+", help="the texts to classify")
    pr.add_argument("--batch-size", type=_positive_int, default=32)

    be = sub.add_parser("bench", help="rerun a chapter's measurements (--suite finetune|strategies) and print JSON",
                        description="--suite finetune (default): fine-tune MiniLM-L6 on Rotten Tomatoes as in the "
                                    "fine-tuning chapter (2 epochs, max length 64, batch 16, lr 5e-5, dynamic padding, "
                                    "auto precision) in a temporary folder, and print one JSON line: test accuracy and "
                                    "F1, training wall time, examples/s, tokens/s, peak memory, precision and hardware. "
                                    "--suite strategies: the strategies chapter's headline comparison (usual vs "
                                    "lightweight recipe, at --train-limit/--eval-limit, default 480/500) and each "
                                    "strategy's throughput, printed as a table followed by one JSON line; on a GPU "
                                    "when one is available. --epochs, --max-length, --batch-size, --learning-rate, "
                                    "--precision and --padding apply to the finetune suite only.")
    be.add_argument("--suite", choices=["finetune", "strategies"], default="finetune",
                    help="which chapter's measurements to rerun (default: finetune)")
    be.add_argument("--steps", type=_positive_int, default=3,
                    help="strategies suite: timed optimizer steps per throughput measurement")
    be.add_argument("--skip-headline", action="store_true",
                    help="strategies suite: throughput only, no fine-tunes")
    be.add_argument("--model", default="minilm-l6", help="'minilm-l6' (embedded), a saved model folder, or a hub name")
    be.add_argument("--data", default="rotten_tomatoes", help="a dataset name or a .csv/.jsonl file with text,label")
    be.add_argument("--train-limit", type=_positive_int, default=None, help="use only N training examples")
    be.add_argument("--eval-limit", type=_positive_int, default=None, help="use only N validation/test examples")
    be.add_argument("--epochs", type=_positive_float, default=2.0)
    be.add_argument("--max-length", type=_positive_int, default=64)
    be.add_argument("--batch-size", type=_positive_int, default=16)
    be.add_argument("--learning-rate", type=_positive_float, default=5e-5)
    be.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    be.add_argument("--padding", choices=["dynamic", "max_length"], default="dynamic")
    be.add_argument("--seed", type=int, default=0)
    return parser


def run_benchmark(model: str = "minilm-l6", data: str = "rotten_tomatoes", *, train_limit: int | None = None,
                  eval_limit: int | None = None, epochs: float = 2.0, max_length: int = 64, batch_size: int = 16,
                  learning_rate: float = 5e-5, precision: str = "auto", padding: str = "dynamic",
                  seed: int = 0) -> dict:
    """Rerun the fine-tuning chapter's headline fine-tune in a temporary folder; return its measurements.

    The defaults are the chapter's settings. Returns a JSON-friendly dict with the test accuracy and F1,
    training wall time (s), examples/s, tokens/s, peak memory (MiB), precision, steps and hardware.
    The temporary folder (checkpoints and the best model) is deleted afterwards.
    """
    import tempfile

    from lightft.train import finetune

    with tempfile.TemporaryDirectory(prefix="lightft-bench-") as scratch:
        result = finetune(
            model, data, max_length=max_length, batch_size=batch_size, epochs=epochs,
            learning_rate=learning_rate, precision=precision, padding=padding, seed=seed,
            output_dir=Path(scratch) / "run", train_limit=train_limit, eval_limit=eval_limit, quiet=True,
        )
    return {
        "model": model, "data": data, "train_limit": train_limit, "eval_limit": eval_limit, "epochs": result.epochs,
        "max_length": max_length, "batch_size": batch_size, "padding": padding, "steps": result.steps,
        "test_accuracy": round(result.metrics["accuracy"], 4), "test_f1": round(result.metrics["f1"], 4),
        "train_seconds": round(result.train_seconds, 2),
        "examples_per_second": round(result.examples_per_second, 2),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "peak_memory_mib": round(result.peak_memory_bytes / 2**20, 1),
        "precision": result.precision, "hardware": result.hardware,
    }


def _finetune(args) -> int:
    from lightft.train import finetune

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not (args.overwrite or args.resume):
        raise FileExistsError(f"--output {output} is not empty; pass --overwrite to replace it or --resume to continue")
    if not args.model or not args.data:
        raise ValueError("--model and --data must not be empty")
    result = finetune(
        args.model, args.data, max_length=args.max_length, batch_size=args.batch_size, epochs=args.epochs,
        learning_rate=args.learning_rate, precision=args.precision, padding=args.padding, seed=args.seed,
        output_dir=output, overwrite=args.overwrite, resume=args.resume, train_limit=args.train_limit,
        eval_limit=args.eval_limit, quiet=args.quiet,
    )
    print(json.dumps({"test": result.metrics, "train_seconds": round(result.train_seconds, 2),
                      "examples_per_second": round(result.examples_per_second, 2),
                      "precision": result.precision, "steps": result.steps,
                      "model": str(Path(result.output_dir) / "best")}))
    return 0


def _predict(args) -> int:
    from lightft.train import predict

    prediction = predict(args.model, args.texts, batch_size=args.batch_size)
    for text, label, probs in zip(args.texts, prediction.labels, prediction.probabilities):
        print(json.dumps({"text": text, "label": label, "probabilities": [round(float(p), 4) for p in probs]}))
    return 0


def _bench(args) -> int:
    if not args.model or not args.data:
        raise ValueError("--model and --data must not be empty")
    if args.suite == "strategies":
        from lightft.strategies import benchmark_strategies, format_benchmark

        result = benchmark_strategies(args.model, args.data, train_limit=args.train_limit or 480,
                                      eval_limit=args.eval_limit or 500, steps=args.steps, seed=args.seed,
                                      headline=not args.skip_headline)
        print(format_benchmark(result))
        print(json.dumps(result))
        return 0
    print(json.dumps(run_benchmark(
        args.model, args.data, train_limit=args.train_limit, eval_limit=args.eval_limit, epochs=args.epochs,
        max_length=args.max_length, batch_size=args.batch_size, learning_rate=args.learning_rate,
        precision=args.precision, padding=args.padding, seed=args.seed,
    )))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return {"finetune": _finetune, "predict": _predict, "bench": _bench}[args.command](args)
    except KeyboardInterrupt:
        print("lightft: interrupted; continue with --resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ModuleNotFoundError) as err:  # OSError: missing files, a full
        # or read-only disk, an existing output folder, no network (ConnectionError)
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"lightft {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
