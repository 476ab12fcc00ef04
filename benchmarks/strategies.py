"""Benchmark: rerun the strategies chapter's measurements and print a table and one JSON line.

Run from the repository root (offline is fine: the model and data are embedded):

    python benchmarks/strategies.py                                  # the chapter's budget: 480 / 500 examples
    python benchmarks/strategies.py --train-limit 2000 --eval-limit 1000   # a larger, less noisy budget
    python benchmarks/strategies.py --skip-headline --steps 2        # throughput only, no fine-tunes
    python -m lightft bench --suite strategies [same options]        # the same script, from the CLI

What it measures (:func:`benchmark_strategies`): this machine's peak matmul FLOP/s in fp32 and in the
low precision (bf16, or fp16 on a GPU without bf16); the headline comparison, the usual recipe
(``lightft.strategies.USUAL_RECIPE``: pad to 128, fp32, batch 16, 3 epochs, lr 5e-5) against the
lightweight recipe (``LIGHTWEIGHT_RECIPE``: dynamic padding, max length 64, length-grouped batches, frozen word embeddings,
bf16/fp16 autocast where the hardware has it):
test accuracy, training wall time, speed-up, throughput and MFU, over 3 seeds at one learning rate
(``--seeds``, ``--learning-rate``); and the training or inference
throughput and memory of each strategy (padding, precision, length grouping, gradient accumulation and
checkpointing, freezing, BitFit, LoRA, int8 quantization on a CPU, a 3-layer student). On a GPU
everything runs there. ``--help`` lists the options; bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch
from transformers import TrainerCallback

import lightft
from lightft import checks, measure, strategies


_KEYS = ("test_accuracy", "train_seconds", "examples_per_s", "tokens_per_s", "mfu", "mfu_steps", "step_share",
         "peak_memory_mib")


class StepClock(TrainerCallback):
    """Seconds inside the optimizer steps (forward, backward, optimizer: ``on_step_begin`` to ``on_step_end``),
    so that a run's ``train_runtime`` splits into the steps and the rest (data loading, the per-epoch
    validation, checkpoints, reloading the best one)."""

    def __init__(self):
        self.seconds, self._start = 0.0, None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._start


def _seeded(model: str, dataset, recipe: dict[str, Any], peak: dict[str, float], *, train_limit: int,
            eval_limit: int, seeds: int) -> dict[str, Any]:
    """``recipe`` fine-tuned with seeds 0..seeds-1: the recipe, each run, and the mean/std of every figure."""
    out: dict[str, Any] = {**recipe, "runs": [], "_predictions": []}   # for the paired test, then dropped
    for seed in range(seeds):
        clock = StepClock()
        run = measure.measure_accuracy(model, dataset, train_limit=train_limit, eval_limit=eval_limit, seed=seed,
                                       callbacks=[clock], **recipe)
        out["_predictions"].append(run["predictions"])
        flops = measure.training_flops_per_token(run.pop("model"), recipe["max_length"])
        mfu = measure.model_flops_utilisation(run["tokens_per_s"], flops, peak[recipe["precision"]])
        share = clock.seconds / run["train_seconds"] if clock.seconds else float("nan")   # of train_runtime, in steps
        out["runs"].append({
            "seed": seed, "test_accuracy": round(run["accuracy"], 4), "train_seconds": round(run["train_seconds"], 2),
            "examples_per_s": round(run["examples_per_s"], 2), "tokens_per_s": round(run["tokens_per_s"], 1),
            "mfu": round(mfu, 4), "mfu_steps": round(mfu / share, 4), "step_share": round(share, 4),
            "peak_memory_mib": round(run["peak_memory_bytes"] / 2**20, 1)})
    for key in _KEYS:
        values = [r[key] for r in out["runs"]]
        out[key] = round(statistics.fmean(values), 4)
        out[f"{key}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else None
    return out


def _paired_gap(dataset, eval_limit: int, a: dict[str, Any], b: dict[str, Any]):
    """``(interval, result)``: the 95 % interval in points of ``a``'s mean accuracy minus ``b``'s (two :func:`_seeded`
    results), a paired bootstrap over the test examples finetune scored (the first ``eval_limit``), every seed's
    predictions of both."""
    gap = lightft.paired_bootstrap(dataset["test"]["label"][:eval_limit], a["_predictions"], b["_predictions"])
    return [round(100 * gap.low, 2), round(100 * gap.high, 2)], gap


def _headline(model: str, dataset, peak: dict[str, float], low: str, *, train_limit: int, eval_limit: int,
              seeds: int, learning_rate: float | None) -> dict[str, Any]:
    """The usual against the lightweight recipe at one learning rate, ``seeds`` seeds each (0, 1, ...): per
    seed and mean/std of test accuracy, train time, throughput, MFU, memory; the speed-up of the means."""
    recipes = {"usual": dict(strategies.USUAL_RECIPE),
               "lightweight": {**strategies.LIGHTWEIGHT_RECIPE, "precision": low}}
    for recipe in recipes.values():   # the same rate for both (default: the usual recipe's, the Trainer default)
        recipe["learning_rate"] = learning_rate or strategies.USUAL_RECIPE["learning_rate"]
    rows: dict[str, Any] = {name: _seeded(model, dataset, recipe, peak, train_limit=train_limit,
                                          eval_limit=eval_limit, seeds=seeds) for name, recipe in recipes.items()}
    rows["speedup"] = round(rows["usual"]["train_seconds"] / rows["lightweight"]["train_seconds"], 2)
    rows["speedup_per_seed"] = [round(u["train_seconds"] / w["train_seconds"], 2)
                                for u, w in zip(rows["usual"]["runs"], rows["lightweight"]["runs"])]
    rows["accuracy_gap_points"] = round(100 * (rows["lightweight"]["test_accuracy"] - rows["usual"]["test_accuracy"]), 2)
    rows["accuracy_gap_interval_points"], gap = _paired_gap(dataset, eval_limit, rows["lightweight"], rows["usual"])
    rows["accuracy_gap_verdict"] = gap.verdict(up="better", down="worse", same="within noise")
    for name in recipes:
        rows[name].pop("_predictions")
    return rows


def _levers(model: str, dataset, peak: dict[str, float], low: str, *, train_limit: int, eval_limit: int,
            seeds: int, learning_rate: float | None) -> list[dict[str, Any]]:
    """Each lever of the lightweight recipe on its own, then combined, then two schedule levers on top (a
    batch of 32 at twice the rate; two epochs at twice the rate), ``seeds`` seeds each at one base rate;
    ``speedup`` is the mean training time of dynamic padding alone over the lever's."""
    rate = learning_rate or strategies.USUAL_RECIPE["learning_rate"]
    base = {**strategies.LIGHTWEIGHT_RECIPE, "precision": low, "learning_rate": rate,
            "group_by_length": False, "freeze_embeddings": False}
    recipe = {**base, "group_by_length": True, "freeze_embeddings": True}
    levers = {"dynamic padding, max 64 (base)": base,
              "+ length-grouped batches": {**base, "group_by_length": True},
              "+ frozen word embeddings": {**base, "freeze_embeddings": True},
              "both (the recipe)": recipe,
              "recipe, batch 32, 2x lr": {**recipe, "batch_size": 2 * recipe["batch_size"], "learning_rate": 2 * rate},
              "recipe, 2 epochs, 2x lr": {**recipe, "epochs": 2, "learning_rate": 2 * rate}}
    rows = [{"lever": name, **_seeded(model, dataset, r, peak, train_limit=train_limit, eval_limit=eval_limit,
                                      seeds=seeds)} for name, r in levers.items()]
    for row in rows:
        row["speedup"] = round(rows[0]["train_seconds"] / row["train_seconds"], 2)
        row["accuracy_vs_base_interval_points"] = _paired_gap(dataset, eval_limit, row, rows[0])[0]
    for row in rows:
        row.pop("_predictions")
    return rows


def _row(name: str, t: measure.Throughput) -> dict[str, Any]:
    return {"strategy": name, "mode": t.mode, "precision": t.precision, "examples_per_s": round(t.examples_per_s, 2),
            "tokens_per_s": round(t.tokens_per_s, 1), "memory_increase_mib": round(t.memory_increase_bytes / 2**20, 1),
            "mfu": None if t.mfu is None else round(t.mfu, 4)}


def _strategy_rows(fresh, tokenizer, texts, labels, peak: dict[str, float], low: str, *, steps: int,
                   seed: int) -> list[dict[str, Any]]:
    """Training throughput of each strategy (``steps`` warmed-up steps), then inference throughput."""
    def batches(**kwargs):
        return measure.text_batches(tokenizer, texts, labels, **{"batch_size": 16, "max_length": 64, **kwargs})

    def train(name, net, b, precision="fp32", **kwargs):
        t = measure.measure_training(net, b, steps=steps, precision=precision, peak_flops=peak[precision], **kwargs)
        return _row(name, t)

    pad128, dyn64 = batches(max_length=128, padding="max_length"), batches()
    net = fresh()
    rows = [train("pad 128", net, pad128), train("dynamic padding, max 64", net, dyn64)]
    if low != "fp32":
        rows += [train("pad 128", net, pad128, low), train("dynamic padding, max 64", net, dyn64, low)]
    elif net.device.type == "cpu":   # no native bf16: its cost measured on a tiny run only, never a real one
        tiny = batches(batch_size=2, max_length=32, padding="max_length")[:2]
        for precision in ("fp32", "bf16"):
            t = measure.measure_training(net, tiny, steps=1, precision=precision)
            rows.append({**_row(f"tiny pad 32, batch 2 ({'emulated ' * (precision == 'bf16')}{precision})", t),
                         "note": "bf16 is emulated on this CPU (no avx512_bf16/amx_bf16): every other row uses fp32"})
    rows += [train("dynamic + length-grouped, max 64", net, batches(group_by_length=True, seed=seed), low),
             train("batch 4 x 4 accumulation, max 64", net, batches(batch_size=4), low, accumulation_steps=4),
             train("gradient checkpointing, pad 128", strategies.enable_gradient_checkpointing(fresh()), pad128),
             train("head only, max 64", strategies.freeze_encoder(fresh()), dyn64, low),
             train("BitFit, max 64", strategies.bitfit(fresh()), dyn64, low),
             train("LoRA r=8, max 64", strategies.apply_lora(fresh()).to(net.device), dyn64, low)]
    teacher = fresh()
    rows.append(_row("inference fp32, max 64", measure.measure_inference(teacher, dyn64)))
    if low != "fp32":
        rows.append(_row(f"inference {low}, max 64", measure.measure_inference(teacher, dyn64, precision=low)))
    if next(teacher.parameters()).device.type == "cpu":
        int8 = strategies.quantize_int8(teacher)
        rows.append(_row("inference int8 dynamic, max 64", measure.measure_inference(int8, dyn64)))
        agree = measure.batch_accuracy(int8, dyn64)[1] == measure.batch_accuracy(teacher, dyn64)[1]
        rows[-1]["accuracy_agreement_with_fp32"] = round(float(agree.float().mean()), 4)
    student = strategies.shallow_student(teacher)
    rows.append(_row("inference 3-layer student, max 64", measure.measure_inference(student, dyn64)))
    return rows


def benchmark_strategies(model: str = "minilm-l6", data: str = "rotten_tomatoes", *, train_limit: int = 480,
                         eval_limit: int = 500, steps: int = 3, seed: int = 0, headline: bool = True, seeds: int = 3,
                         learning_rate: float | None = None, levers: bool = False) -> dict[str, Any]:
    """Rerun the strategies chapter's measurements: the headline comparison and per-strategy throughput.

    The usual and the lightweight recipe are fine-tuned on ``train_limit`` examples and tested on
    ``eval_limit``, ``seeds`` times each at one ``learning_rate`` (default: the usual recipe's, which is
    the ``Trainer`` default; skipped with ``headline=False``); each strategy's throughput is measured over ``steps``
    warmed-up steps of batch 16 on real training sentences, on a GPU when there is one. Returns a
    JSON-friendly dict: ``hardware``, ``peak_gflops``, ``headline`` and ``strategies`` (rows); with
    ``levers=True`` also ``levers``: each lever of the lightweight recipe fine-tuned on its own and combined.
    """
    for name, value in (("train_limit", train_limit), ("eval_limit", eval_limit), ("steps", steps), ("seeds", seeds)):
        checks.integer(name, value)
    if learning_rate is not None:
        checks.number("learning_rate", learning_rate, 0, 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    low = lightft.resolve_precision("auto")[0]
    size = 2048 if device == "cuda" else 1024
    peak = {p: measure.peak_matmul_flops(p, size=size) for p in dict.fromkeys(["fp32", low])}  # fp32 first
    dataset, tokenizer = lightft.load_dataset(data, seed=seed), lightft.load_tokenizer(model)
    texts = dataset["train"]["text"][:max(train_limit, 16 * (steps + 1))]
    labels = dataset["train"]["label"][:len(texts)]
    out: dict[str, Any] = {"hardware": lightft.hardware_summary(), "device": device, "model": model, "data": data,
                           "train_limit": train_limit, "eval_limit": eval_limit, "seeds": seeds, "low_precision": low,
                           "peak_gflops": {k: round(v / 1e9, 1) for k, v in peak.items()}}
    if headline:
        out["headline"] = _headline(model, dataset, peak, low, train_limit=train_limit, eval_limit=eval_limit,
                                    seeds=seeds, learning_rate=learning_rate)
    if levers:
        out["levers"] = _levers(model, dataset, peak, low, train_limit=train_limit, eval_limit=eval_limit,
                                seeds=seeds, learning_rate=learning_rate)
    out["strategies"] = _strategy_rows(lambda: lightft.load_model(model, seed=seed).to(device), tokenizer,
                                       texts, labels, peak, low, steps=steps, seed=seed)
    return out


def format_benchmark(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`benchmark_strategies`' result (the JSON holds the same numbers)."""
    lines = [f"hardware: {result['hardware']}",
             "peak matmul: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result["peak_gflops"].items())]
    if "headline" in result:
        h = result["headline"]
        lines.append(f"headline ({result['train_limit']} training / {result['eval_limit']} test examples, mean of "
                     f"{result['seeds']} seed(s), lr {h['usual']['learning_rate']:g} for both):")
        lines.append(f"  {'recipe':12s} {'test acc':>8s} {'+-':>6s} {'train s':>8s} {'ex/s':>7s} {'tok/s':>8s} {'MFU':>6s}"
                     f" {'in steps':>8s} {'MFU steps':>9s}")
        for name in ("usual", "lightweight"):
            r = h[name]
            std = f"{r['test_accuracy_std']:6.3f}" if r.get("test_accuracy_std") is not None else "     -"
            lines.append(f"  {name:12s} {r['test_accuracy']:8.3f} {std} {r['train_seconds']:8.1f} "
                         f"{r['examples_per_s']:7.1f} {r['tokens_per_s']:8.0f} {r['mfu']:6.1%} {r['step_share']:8.0%} "
                         f"{r['mfu_steps']:9.1%}")
        low, high = h["accuracy_gap_interval_points"]
        lines.append(f"  speed-up {h['speedup']:.1f}x, accuracy difference {h['accuracy_gap_points']:+.1f} points "
                     f"(95 % paired-bootstrap interval {low:+.1f} to {high:+.1f}: {h['accuracy_gap_verdict']})")
    if "levers" in result:
        lines.append(f"levers (mean of {result['seeds']} seed(s); speed-up over the base's training time):")
        lines.append(f"  {'lever':32s} {'test acc':>8s} {'+-':>6s} {'train s':>8s} {'ex/s':>7s} {'MFU':>6s} {'speed-up':>8s}"
                     f" {'vs base, 95 % (points)':>22s}")
        for r in result["levers"]:
            std = f"{r['test_accuracy_std']:6.3f}" if r.get("test_accuracy_std") is not None else "     -"
            low, high = r["accuracy_vs_base_interval_points"]
            lines.append(f"  {r['lever']:32s} {r['test_accuracy']:8.3f} {std} {r['train_seconds']:8.1f} "
                         f"{r['examples_per_s']:7.1f} {r['mfu']:6.1%} {r['speedup']:7.2f}x {low:+10.1f} to {high:+.1f}")
    lines.append(f"  {'strategy':36s} {'mode':9s} {'prec':4s} {'ex/s':>7s} {'tok/s':>8s} {'mem MiB':>8s} {'MFU':>6s}")
    for r in result["strategies"]:
        mfu = f"{r['mfu']:6.1%}" if r["mfu"] is not None else "     -"
        lines.append(f"  {r['strategy']:36s} {r['mode']:9s} {r['precision']:4s} {r['examples_per_s']:7.1f} "
                     f"{r['tokens_per_s']:8.0f} {r['memory_increase_mib']:8.1f} {mfu}")
    lines += [f"  note: {note}" for note in dict.fromkeys(r["note"] for r in result["strategies"] if r.get("note"))]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as the lightft CLI
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchmarks/strategies.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm-l6",
                        help="'minilm-l6' (embedded), a saved model folder, or a hub name")
    parser.add_argument("--data", default="rotten_tomatoes",
                        help="a dataset name or a .csv/.jsonl file with text,label")
    parser.add_argument("--train-limit", type=int, default=480, help="training examples of the headline fine-tunes")
    parser.add_argument("--eval-limit", type=int, default=500, help="test examples of the headline fine-tunes")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per throughput measurement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the throughput measurements")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of each headline recipe (default 3)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="one learning rate for both headline recipes (default: the Trainer default, 5e-05)")
    parser.add_argument("--skip-headline", action="store_true", help="throughput only, no fine-tunes")
    parser.add_argument("--levers", action="store_true",
                        help="also fine-tune each lever of the lightweight recipe on its own and combined (--seeds each)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, print the table then one JSON line; 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        if not args.model or not args.data:
            raise ValueError("--model and --data must not be empty")
        result = benchmark_strategies(args.model, args.data, train_limit=args.train_limit,
                                      eval_limit=args.eval_limit, steps=args.steps, seed=args.seed,
                                      headline=not args.skip_headline, seeds=args.seeds,
                                      learning_rate=args.learning_rate, levers=args.levers)
    except (ValueError, TypeError, OSError, ModuleNotFoundError) as err:
        print(f"benchmarks/strategies.py: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    print(format_benchmark(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
