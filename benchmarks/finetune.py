"""Benchmark: rerun the fine-tuning chapter's headline fine-tune and print one JSON line.

Run from the repository root (offline is fine: the model and data are embedded):

    python benchmarks/finetune.py                       # the full run: about 5 minutes on 2 CPU cores
    python benchmarks/finetune.py --train-limit 500 --epochs 1   # a quick, smaller run
    python -m lightft bench [same options]              # the same function, from the installed package

Settings are the chapter's: MiniLM-L6 on the whole Rotten Tomatoes training split, 2 epochs, max length
64, batch 16, learning rate 5e-5, dynamic padding, precision "auto". The JSON line holds the test
accuracy and F1, training wall time (s), examples/s, tokens/s, peak memory (MiB), the precision used
and the hardware. Checkpoints go to a temporary folder that is deleted afterwards. ``--help`` lists
every option; bad input prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from lightft.__main__ import main

    sys.exit(main(["bench", *sys.argv[1:]]))
