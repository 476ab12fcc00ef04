"""Benchmark: LoRA's rank and targets against accuracy, several seeds each (the LoRA chapter's sweep).

Run from the repository root (offline is fine: the LLM and the data are embedded):

    python benchmarks/lora_sweep.py                            # 4 ranks x 2 target sets x 2 seeds: 16 runs
    python benchmarks/lora_sweep.py --ranks 4,16 --seeds 3     # fewer ranks, more seeds
    python -m lightft bench --suite lora_sweep --seeds 2       # the same through the CLI

The chapter (book/lora.md) measures what rank and targets *cost* exactly in a few steps; what they buy
in accuracy needs a full training run per setting, which is this script. Each setting is one LoRA-SFT
run (:func:`lightft.llm.train_sft`: one epoch, batch ``--batch-size``, learning rate ``--learning-rate``,
``alpha = 2 r`` so the update's scale alpha / r stays the same and only the capacity changes) of the
embedded SmolLM2-135M-Instruct on the first ``--train-limit`` Rotten Tomatoes training sentences
(label words, the loss on the answer only), scored on the first ``--test-limit`` test sentences
(:func:`lightft.llm.classify_with_llm`). A seed sets the adapter's initialisation (``torch.manual_seed``
before ``get_peft_model``) and the Trainer's batch order. Time: about 100 s per run on a 2-core CPU
with bf16 instructions at the defaults (fp32 throughout), two to three times that without.

Prints a table (per setting: trainable parameters, accuracy mean and standard deviation over the seeds,
train examples/s), a line comparing the spread *between* settings with the spread *between seeds*,
then one JSON line with every run. ``--help`` lists the options; bad input prints one line and exits
with status 2, before anything is loaded.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import lightft
from lightft import checks, llm

#: The two target sets of the chapter: the LoRA paper's query and value projections, and every linear layer.
TARGET_SETS = {"qv": ["q_proj", "v_proj"],
               "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def sweep(model: str = "smollm2-135m-instruct", *, ranks: Sequence[int] = (1, 4, 16, 64),
          targets: Sequence[str] = tuple(TARGET_SETS), seeds: int = 2, train_limit: int = 160, test_limit: int = 200,
          batch_size: int = 8, learning_rate: float = 1e-3) -> dict[str, Any]:
    """Every (targets, rank, seed) run; a JSON-friendly dict with ``hardware``, ``runs`` and ``settings``."""
    from peft import LoraConfig, get_peft_model

    ranks = [checks.integer("rank", r) for r in ranks]
    if not ranks:
        raise ValueError("ranks must name at least one rank, e.g. 1,4,16,64")
    for t in targets:
        checks.choice("targets", t, TARGET_SETS)
    checks.integer("seeds", seeds)
    checks.integer("train_limit", train_limit)
    checks.integer("test_limit", test_limit)
    checks.integer("batch_size", batch_size)
    checks.number("learning_rate", learning_rate, low=0)
    base, tokenizer = llm.load_llm(model)
    data = lightft.load_dataset("rotten_tomatoes")
    train = data["train"].select(range(min(train_limit, len(data["train"]))))
    test = data["test"].select(range(min(test_limit, len(data["test"]))))
    examples = llm.sft_examples(tokenizer, [llm.sentiment_prompt(tokenizer, t) for t in train["text"]],
                                [llm.LABEL_WORDS[y] for y in train["label"]])
    labels = np.array(test["label"])
    runs = []
    with tempfile.TemporaryDirectory(prefix="lightft-lora-sweep-") as work:
        for where in targets:
            for r in ranks:
                for seed in range(seeds):
                    torch.manual_seed(seed)
                    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(
                        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=TARGET_SETS[where],
                        task_type="CAUSAL_LM"))
                    result = llm.train_sft(peft_model, tokenizer, examples, Path(work) / f"{where}-{r}-{seed}",
                                           epochs=1, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
                    guess = np.array(llm.classify_with_llm(peft_model, tokenizer, list(test["text"])))
                    runs.append({"targets": where, "rank": r, "seed": seed,
                                 "trainable": peft_model.get_nb_trainable_parameters()[0],
                                 "accuracy": round(float((guess == labels).mean()), 4),
                                 "train_seconds": round(result.seconds, 1),
                                 "examples_per_s": round(result.examples_per_second, 2),
                                 "final_loss": round(float(np.mean(result.losses[-5:])), 4)})
                    del peft_model
                    gc.collect()
    return {"hardware": lightft.hardware_summary(), "model": model, "train": len(examples), "test": len(labels),
            "seeds": seeds, "batch_size": batch_size, "learning_rate": learning_rate, "runs": runs,
            "settings": summarise(runs)}


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (targets, rank): trainable, accuracy mean and standard deviation over seeds, examples/s."""
    rows = []
    for key in dict.fromkeys((r["targets"], r["rank"]) for r in runs):
        mine = [r for r in runs if (r["targets"], r["rank"]) == key]
        accuracy = [r["accuracy"] for r in mine]
        rows.append({"targets": key[0], "rank": key[1], "trainable": mine[0]["trainable"], "seeds": len(mine),
                     "accuracy_mean": round(statistics.fmean(accuracy), 4),
                     "accuracy_std": round(statistics.stdev(accuracy), 4) if len(mine) > 1 else None,
                     "examples_per_s": round(statistics.fmean(r["examples_per_s"] for r in mine), 2)})
    return rows


def format_sweep(result: dict[str, Any]) -> str:
    """The plain-text table of :func:`sweep`'s result, and the between-settings against between-seeds line."""
    rows = result["settings"]
    lines = [f"hardware: {result['hardware']}",
             f"model: {result['model']}; {result['train']} train / {result['test']} test Rotten Tomatoes sentences, "
             f"one epoch, batch {result['batch_size']}, lr {result['learning_rate']:g}, alpha = 2r, "
             f"{result['seeds']} seed(s) each",
             f"  {'targets':10s} {'rank':>4s} {'trainable':>11s} {'accuracy %':>10s} {'std':>5s} {'ex/s':>6s}"]
    for r in rows:
        std = f"{100 * r['accuracy_std']:5.1f}" if r["accuracy_std"] is not None else f"{'-':>5s}"
        lines.append(f"  {r['targets']:10s} {r['rank']:4d} {r['trainable']:11,d} {100 * r['accuracy_mean']:10.1f} "
                     f"{std} {r['examples_per_s']:6.2f}")
    means = [r["accuracy_mean"] for r in rows]
    stds = [r["accuracy_std"] for r in rows if r["accuracy_std"] is not None]
    if len(means) > 1 and stds:
        lines.append(f"spread of the setting means {100 * (max(means) - min(means)):.1f} points; "
                     f"mean seed std {100 * statistics.fmean(stds):.1f} points")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as the lightft CLI
        self.exit(2, f"{self.prog}: error: {message}\n")


def _ranks(text: str) -> list[int]:
    try:
        ranks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ranks takes comma-separated integers such as 1,4,16,64, got {text!r}")
    if not ranks or min(ranks) < 1:
        raise argparse.ArgumentTypeError(f"--ranks takes integers >= 1 such as 1,4,16,64, got {text!r}")
    return ranks


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchmarks/lora_sweep.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="'smollm2-135m-instruct' (embedded), a saved folder, or a hub name (needs network)")
    parser.add_argument("--ranks", type=_ranks, default=[1, 4, 16, 64], help="comma-separated LoRA ranks")
    parser.add_argument("--targets", default=",".join(TARGET_SETS),
                        help=f"comma-separated target sets among {', '.join(TARGET_SETS)}")
    parser.add_argument("--seeds", type=int, default=2, help="runs per setting, seeds 0..N-1")
    parser.add_argument("--train-limit", type=int, default=160, help="training sentences (one epoch)")
    parser.add_argument("--test-limit", type=int, default=200, help="test sentences scored")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, print the table then one JSON line; 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        if not args.model:
            raise ValueError("--model must not be empty")
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        if not targets or any(t not in TARGET_SETS for t in targets):
            raise ValueError(f"--targets takes {', '.join(TARGET_SETS)} (comma-separated), got {args.targets!r}")
        for name in ("seeds", "train_limit", "test_limit", "batch_size"):   # refused before anything is loaded
            checks.integer(name, getattr(args, name))
        checks.number("learning_rate", args.learning_rate, low=0)
        result = sweep(args.model, ranks=args.ranks, targets=targets, seeds=args.seeds, train_limit=args.train_limit,
                       test_limit=args.test_limit, batch_size=args.batch_size, learning_rate=args.learning_rate)
    except (ValueError, TypeError, OSError, ModuleNotFoundError) as err:
        print(f"benchmarks/lora_sweep.py: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    print(format_sweep(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
