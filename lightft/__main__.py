"""Command line: ``python -m lightft finetune | predict | bench | sft | generate`` (also installed as ``lightft``).

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
    parser = _Parser(prog="lightft", description="Lightweight fine-tuning of transformer language models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _encoder_commands(sub)
    _bench_command(sub)
    _llm_commands(sub)
    return parser


def _training_options(parser, max_length: int) -> None:
    """The fine-tune's settings, shared by ``finetune`` and ``bench --suite finetune``."""
    parser.add_argument("--max-length", type=_positive_int, default=max_length)
    parser.add_argument("--batch-size", type=_positive_int, default=16)
    parser.add_argument("--epochs", type=_positive_float, default=2.0)
    parser.add_argument("--learning-rate", type=_positive_float, default=5e-5)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument("--padding", choices=["dynamic", "max_length"], default="dynamic")
    parser.add_argument("--train-limit", type=_positive_int, default=None, help="use only N training examples")
    parser.add_argument("--eval-limit", type=_positive_int, default=None, help="use only N validation/test examples")
    parser.add_argument("--seed", type=int, default=0)


def _encoder_commands(sub) -> None:
    ft = sub.add_parser("finetune", help="fine-tune a model on a dataset and save the best checkpoint",
                        description="Fine-tune, evaluate each epoch, keep the best checkpoint, print one JSON "
                                    "line of final test metrics.")
    ft.add_argument("--model", default="minilm-l6",
                    help="'minilm-l6' (embedded), a saved model folder, or a hub name (needs network)")
    ft.add_argument("--data", default="rotten_tomatoes",
                    help="'rotten_tomatoes', 'imdb', 'tweets', a .csv/.jsonl file with text,label, or a hub name")
    ft.add_argument("--output", required=True, help="folder for checkpoints and the best model")
    _training_options(ft, max_length=128)
    ft.add_argument("--checkpoint-every", type=_positive_int, default=None,
                    help="evaluate and save a checkpoint every N optimizer steps (default: every epoch)")
    ft.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    ft.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    ft.add_argument("--quiet", action="store_true", help="no progress bars")

    pr = sub.add_parser("predict", help="classify texts with a fine-tuned model",
                        description="Print one JSON line per text: label and class probabilities.")
    pr.add_argument("--model", required=True, help="a folder written by 'lightft finetune'")
    pr.add_argument("texts", nargs="+", help="the texts to classify")
    pr.add_argument("--batch-size", type=_positive_int, default=32)


def _bench_command(sub) -> None:
    be = sub.add_parser("bench", help="rerun a chapter's measurements (--suite finetune|strategies|inference|llm|lora_sweep|distributed)",
                        description="--suite finetune (default): fine-tune MiniLM-L6 on Rotten Tomatoes as in the "
                                    "fine-tuning chapter (2 epochs, max length 64, batch 16, lr 5e-5, dynamic padding, "
                                    "auto precision) in a temporary folder, and print one JSON line: test accuracy and "
                                    "F1, training wall time, examples/s, tokens/s, peak memory, precision and hardware. "
                                    "--suite strategies: the strategies chapter's headline comparison (usual vs "
                                    "lightweight recipe at one --learning-rate, --seeds seeds each, at "
                                    "--train-limit/--eval-limit, default 480/500) and each "
                                    "strategy's throughput, printed as a table followed by one JSON line; on a GPU "
                                    "when one is available. --suite inference: torch fp32 / int8 against ONNX Runtime "
                                    "fp32 / int8 on --eval-limit test sentences (default 256, --max-length), a table "
                                    "and one JSON line. --suite llm: the LLM part's cost figures (SFT tokens/s and MFU "
                                    "for LoRA, QLoRA and full fine-tuning at --steps timed steps, generation with and "
                                    "without the KV cache) on the embedded SmolLM2-135M-Instruct. --suite lora_sweep: LoRA ranks 1, 4, 16, 64 on "
                                    "q,v and on every linear layer, --seeds full LoRA-SFT runs each (default 3; 2 is "
                                    "16 runs) at --train-limit/--eval-limit (default 160/200): accuracy mean and spread. "
                                    "--suite distributed: "
                                    "the same fine-tune in one process and under torchrun with 2 processes (DDP, gloo), "
                                    "at --train-limit/--eval-limit (default 240/200) and --epochs. --batch-size, "
                                    "--precision and --padding apply to the finetune suite only.")
    be.add_argument("--suite", choices=["finetune", "strategies", "inference", "llm", "lora_sweep", "distributed"], default="finetune",
                    help="which chapter's measurements to rerun (default: finetune)")
    be.add_argument("--steps", type=_positive_int, default=3,
                    help="strategies suite: timed optimizer steps per throughput measurement")
    be.add_argument("--skip-headline", action="store_true", help="strategies suite: throughput only, no fine-tunes")
    be.add_argument("--levers", action="store_true",
                    help="strategies suite: also fine-tune each lever of the lightweight recipe alone and combined")
    be.add_argument("--seeds", type=_positive_int, default=3,
                    help="strategies suite: seeds of each headline recipe (both at --learning-rate); lora_sweep: "
                         "runs per setting")
    be.add_argument("--model", default="minilm-l6", help="'minilm-l6' (embedded), a saved model folder, or a hub name")
    be.add_argument("--data", default="rotten_tomatoes", help="a dataset name or a .csv/.jsonl file with text,label")
    _training_options(be, max_length=64)


def _llm_commands(sub) -> None:
    sf = sub.add_parser("sft", help="LoRA-SFT (or --qlora) of the embedded LLM on a labelled dataset as label words",
                        description="Fine-tune an LLM with LoRA on a labelled dataset (the answer is the class name, "
                                    "e.g. 'positive' or 'negative', after a chat prompt; the loss on the answer only), "
                                    "save the adapter in OUTPUT/adapter and print one JSON line (chapter 'LoRA and "
                                    "QLoRA on an LLM').")
    sf.add_argument("--model", default="smollm2-135m-instruct",
                    help="'smollm2-135m-instruct' (embedded), a saved folder, or a hub name (needs network)")
    sf.add_argument("--data", default="rotten_tomatoes", help="'rotten_tomatoes', 'imdb', 'tweets' (3 classes) or a .csv/.jsonl file with text,label "
                         "(class names as label words; 0/1 labels answer negative/positive)")
    sf.add_argument("--output", required=True, help="folder for checkpoints and the adapter")
    sf.add_argument("--qlora", action="store_true", help="4-bit NF4 base (bitsandbytes) instead of fp32")
    sf.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    sf.add_argument("--train-limit", type=_positive_int, default=400)
    sf.add_argument("--eval-limit", type=_positive_int, default=200)
    sf.add_argument("--epochs", type=_positive_float, default=1.0)
    sf.add_argument("--batch-size", type=_positive_int, default=8)
    sf.add_argument("--learning-rate", type=_positive_float, default=1e-3)
    sf.add_argument("--rank", type=_positive_int, default=8)
    sf.add_argument("--alpha", type=_positive_float, default=16.0)
    sf.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                    help="comma-separated linear layer names")
    sf.add_argument("--seed", type=int, default=0)

    ge = sub.add_parser("generate", help="answer a prompt with the LLM (chat template), optionally with an adapter",
                        description="Print the model's greedy answer to each prompt, one per line.")
    ge.add_argument("--model", default="smollm2-135m-instruct", help="'smollm2-135m-instruct', a folder, or a hub name")
    ge.add_argument("--adapter", default=None, help="a folder saved by 'lightft sft' (OUTPUT/adapter)")
    ge.add_argument("--max-new-tokens", type=_positive_int, default=64)
    ge.add_argument("prompts", nargs="+", help="the prompts")


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
        result = finetune(model, data, max_length=max_length, batch_size=batch_size, epochs=epochs,
                          learning_rate=learning_rate, precision=precision, padding=padding, seed=seed,
                          output_dir=Path(scratch) / "run", train_limit=train_limit, eval_limit=eval_limit, quiet=True)
    return {
        "model": model, "data": data, "train_limit": train_limit, "eval_limit": eval_limit, "epochs": result.epochs,
        "max_length": max_length, "batch_size": batch_size, "padding": padding, "steps": result.steps,
        "test_accuracy": round(result.metrics["accuracy"], 4), "test_f1": round(result.metrics["f1"], 4),
        "train_seconds": round(result.train_seconds, 2), "examples_per_second": round(result.examples_per_second, 2),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "peak_memory_mib": round(result.peak_memory_bytes / 2**20, 1), "precision": result.precision,
        "hardware": result.hardware}


def _finetune(args) -> int:
    from accelerate import PartialState

    from lightft.train import finetune

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not (args.overwrite or args.resume):
        raise FileExistsError(f"--output {output} is not empty; pass --overwrite to replace it or --resume to continue")
    if not args.model or not args.data:
        raise ValueError("--model and --data must not be empty")
    result = finetune(args.model, args.data, max_length=args.max_length, batch_size=args.batch_size, epochs=args.epochs,
                      learning_rate=args.learning_rate, precision=args.precision, padding=args.padding, seed=args.seed,
                      output_dir=output, overwrite=args.overwrite, resume=args.resume, train_limit=args.train_limit,
                      eval_limit=args.eval_limit, quiet=args.quiet, checkpoint_every=args.checkpoint_every)
    if PartialState().is_main_process:  # under torchrun / accelerate launch: one line, from rank 0
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
    if args.suite != "finetune":  # a chapter runner: a script of the repository, not part of the package
        script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{args.suite}.py"
        if not script.is_file():
            raise FileNotFoundError(f"--suite {args.suite} runs benchmarks/{args.suite}.py of the lightft repository; "
                                    "run it from a checkout (git clone), not from an installed package")
        import runpy

        if args.suite == "inference":
            return runpy.run_path(str(script))["main"](
                ["--model", args.model, "--data", args.data, "--limit", str(args.eval_limit or 256),
                 "--max-length", str(args.max_length), "--seed", str(args.seed)])
        if args.suite == "llm":  # the LLM is its own model: --model only when it names something else
            model = [] if args.model == "minilm-l6" else ["--model", args.model]
            return runpy.run_path(str(script))["main"](model + ["--steps", str(args.steps)])
        if args.suite == "lora_sweep":
            model = [] if args.model == "minilm-l6" else ["--model", args.model]
            return runpy.run_path(str(script))["main"](
                model + ["--seeds", str(args.seeds), "--train-limit", str(args.train_limit or 160),
                         "--test-limit", str(args.eval_limit or 200)])
        if args.suite == "distributed":
            return runpy.run_path(str(script))["main"](
                ["--model", args.model, "--data", args.data, "--train-limit", str(args.train_limit or 240),
                 "--eval-limit", str(args.eval_limit or 200), "--epochs", str(args.epochs),
                 "--max-length", str(args.max_length), "--learning-rate", str(args.learning_rate),
                 "--seed", str(args.seed)])

        argv = ["--model", args.model, "--data", args.data, "--train-limit", str(args.train_limit or 480),
                "--eval-limit", str(args.eval_limit or 500), "--steps", str(args.steps), "--seed", str(args.seed),
                "--seeds", str(args.seeds), "--learning-rate", str(args.learning_rate)]
        return runpy.run_path(str(script))["main"](argv + ["--skip-headline"] * args.skip_headline
                                                   + ["--levers"] * args.levers)
    print(json.dumps(run_benchmark(
        args.model, args.data, train_limit=args.train_limit, eval_limit=args.eval_limit, epochs=args.epochs,
        max_length=args.max_length, batch_size=args.batch_size, learning_rate=args.learning_rate,
        precision=args.precision, padding=args.padding, seed=args.seed)))
    return 0


def _sft(args) -> int:
    from lightft.llm import run_sft

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    print(json.dumps(run_sft(
        args.model, args.data, args.output, qlora=args.qlora, resume=args.resume, train_limit=args.train_limit,
        eval_limit=args.eval_limit, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        r=args.rank, alpha=args.alpha, target_modules=targets, seed=args.seed)))
    return 0


def _generate(args) -> int:
    from lightft.llm import chat, load_with_adapter

    model, tokenizer = load_with_adapter(args.model, args.adapter)
    for prompt in args.prompts:
        print(chat(model, tokenizer, prompt, max_new_tokens=args.max_new_tokens))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return {"finetune": _finetune, "predict": _predict, "bench": _bench, "sft": _sft,
                "generate": _generate}[args.command](args)
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
