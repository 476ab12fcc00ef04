"""Benchmark: rerun the strategies chapter's measurements and print a table and one JSON line.

Run from the repository root (offline is fine: the model and data are embedded):

    python benchmarks/strategies.py                                  # the chapter's budget: 480 / 500 examples
    python benchmarks/strategies.py --train-limit 2000 --eval-limit 1000   # a larger, less noisy budget
    python benchmarks/strategies.py --skip-headline --steps 2        # throughput only, no fine-tunes
    python -m lightft bench --suite strategies [same options]        # the same function, from the package

What it measures (``lightft.strategies.benchmark_strategies``): this machine's peak matmul FLOP/s in
fp32 and in the low precision (bf16, or fp16 on a GPU without bf16); the headline comparison, the usual
recipe (pad to 128, fp32, batch 16, 3 epochs, lr 5e-5) against the lightweight recipe (dynamic
padding, bf16/fp16 autocast, max length 64, 3 epochs, lr 1e-4): test accuracy, training wall time,
speed-up, throughput and model FLOPs utilisation; and training or inference throughput and memory of
each strategy (padding, precision, length grouping, gradient accumulation and checkpointing, freezing,
BitFit, LoRA, int8 quantization on a CPU, a 3-layer student). On a GPU everything runs there.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from lightft.__main__ import main

    sys.exit(main(["bench", "--suite", "strategies", *sys.argv[1:]]))
