"""Benchmark: the same fine-tune in one process and under torchrun (DDP); print a table and one JSON line.

Run from the repository root (offline is fine: the model and data are embedded):

    python benchmarks/distributed.py                                # 240 Rotten Tomatoes sentences, 1 epoch
    python benchmarks/distributed.py --train-limit 2000 --epochs 2  # a larger, less noisy budget
    python benchmarks/distributed.py --processes 4 --threads 8      # on a machine with 8 cores

What it measures (:func:`benchmark_distributed`): ``python -m lightft finetune`` run twice on MiniLM-L6
(``lightft.load_model("minilm-l6")``) with the same settings and the same global batch: once as one
process with ``--threads`` torch threads, once as ``torchrun --standalone --nproc_per_node P`` with
``--threads / P`` threads per process, each rank taking ``batch / P`` sentences of every batch (so both
runs take the same optimizer steps). It reports each run's training examples/s (the ``Trainer``'s
training time; the launch, loading and evaluation are in ``wall s``), the scaling ratio (examples/s
under DDP over one process) and each run's test accuracy. On a GPU machine, torchrun puts one rank on
each GPU instead. ``--help`` lists the options; bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lightft import checks
from lightft.environment import cpu_name


def _run(name: str, launcher: list[str], options: list[str], threads: int) -> dict[str, Any]:
    """Run ``launcher -m lightft finetune options`` with ``threads`` threads a process; its JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="lightft-ddp-bench-") as scratch:
        start = time.perf_counter()
        done = subprocess.run([*launcher, "-m", "lightft", "finetune", *options, "--output", str(Path(scratch) / "run"),
                               "--quiet"], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if "error" in line.lower()] or done.stderr.splitlines() or [""]
        error = ValueError if done.returncode == 2 else RuntimeError  # 2: lightft refused its input
        raise error(f"the {name} run failed (exit status {done.returncode}): {last[-1].strip()}")
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    return {"run": name, "examples_per_s": printed["examples_per_second"], "train_seconds": printed["train_seconds"],
            "wall_seconds": round(wall, 1), "steps": printed["steps"], "precision": printed["precision"],
            "test_accuracy": round(printed["test"]["accuracy"], 4)}


def benchmark_distributed(model: str = "minilm-l6", data: str = "rotten_tomatoes", *, train_limit: int = 240,
                          eval_limit: int = 200, epochs: float = 1.0, batch_size: int = 16, max_length: int = 64,
                          learning_rate: float = 5e-5, precision: str = "auto", processes: int = 2,
                          threads: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Fine-tune ``model`` in one process with ``threads`` threads and in ``processes`` DDP processes with
    ``threads / processes`` threads each, at the same global ``batch_size``; return both runs' examples/s,
    steps and test accuracy and the scaling ratio. ``threads`` defaults to the number of logical CPUs."""
    threads = (os.cpu_count() or 1) if threads is None else threads
    for name, value in (("train_limit", train_limit), ("eval_limit", eval_limit), ("batch_size", batch_size),
                        ("max_length", max_length), ("processes", processes), ("threads", threads)):
        checks.integer(name, value)
    checks.number("epochs", epochs, 0, None)
    if processes < 2 or threads % processes or batch_size % processes:
        raise ValueError(f"processes must be >= 2 and divide both threads ({threads}) and batch_size ({batch_size}); "
                         f"got {processes}")
    common = ["--model", model, "--data", data, "--train-limit", str(train_limit), "--eval-limit", str(eval_limit),
              "--epochs", str(epochs), "--max-length", str(max_length), "--learning-rate", str(learning_rate),
              "--precision", precision, "--seed", str(seed)]
    def label(n: int, t: int) -> str:
        return f"{n} process{'es' * (n > 1)} x {t} thread{'s' * (t > 1)}"

    single = _run(label(1, threads), [sys.executable], [*common, "--batch-size", str(batch_size)], threads)
    ddp = _run(f"torchrun {label(processes, threads // processes)}",
               [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)],
               [*common, "--batch-size", str(batch_size // processes)], threads // processes)
    return {"hardware": f"{cpu_name()}, {os.cpu_count()} logical CPUs", "model": model, "data": data,
            "train_limit": train_limit, "eval_limit": eval_limit, "epochs": epochs, "global_batch": batch_size,
            "max_length": max_length, "learning_rate": learning_rate, "processes": processes, "threads": threads,
            "runs": [{**single, "processes": 1, "threads_per_process": threads, "batch_per_process": batch_size},
                     {**ddp, "processes": processes, "threads_per_process": threads // processes,
                      "batch_per_process": batch_size // processes}],
            "scaling": round(ddp["examples_per_s"] / single["examples_per_s"], 3)}


def format_benchmark(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`benchmark_distributed`'s result (the JSON holds the same numbers)."""
    lines = [f"hardware: {result['hardware']}",
             f"{result['model']} on {result['train_limit']} {result['data']} training sentences, {result['epochs']:g} "
             f"epoch(s), global batch {result['global_batch']}, max length {result['max_length']}, "
             f"test on {result['eval_limit']}",
             f"  {'run':34s} {'batch/proc':>10s} {'steps':>5s} {'prec':>4s} {'train s':>8s} {'ex/s':>7s} "
             f"{'wall s':>7s} {'test acc':>8s}"]
    for r in result["runs"]:
        lines.append(f"  {r['run']:34s} {r['batch_per_process']:10d} {r['steps']:5d} {r['precision']:>4s} "
                     f"{r['train_seconds']:8.1f} {r['examples_per_s']:7.1f} {r['wall_seconds']:7.1f} "
                     f"{r['test_accuracy']:8.3f}")
    lines.append(f"  scaling: {result['scaling']:.2f}x the examples/s of one process "
                 f"({result['processes']} processes; {result['processes']:.2f}x would be perfect)")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as the lightft CLI
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchmarks/distributed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm-l6", help="'minilm-l6' (embedded), a saved model folder, or a hub name")
    parser.add_argument("--data", default="rotten_tomatoes", help="a dataset name or a .csv/.jsonl file with text,label")
    parser.add_argument("--train-limit", type=int, default=240, help="training sentences")
    parser.add_argument("--eval-limit", type=int, default=200, help="validation and test sentences")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (split over the processes)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument("--processes", type=int, default=2, help="DDP processes (torchrun --nproc_per_node)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the one-process run, shared out among the DDP processes "
                             "(default: the number of logical CPUs)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, print the table then one JSON line; 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        if not args.model or not args.data:
            raise ValueError("--model and --data must not be empty")
        result = benchmark_distributed(
            args.model, args.data, train_limit=args.train_limit, eval_limit=args.eval_limit, epochs=args.epochs,
            batch_size=args.batch_size, max_length=args.max_length, learning_rate=args.learning_rate,
            precision=args.precision, processes=args.processes, threads=args.threads, seed=args.seed)
    except (ValueError, TypeError, OSError) as err:
        print(f"benchmarks/distributed.py: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a run failed: its own last error line
        print(f"benchmarks/distributed.py: {err}", file=sys.stderr)
        return 1
    print(format_benchmark(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
