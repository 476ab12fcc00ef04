"""benchmarks/lora_sweep.py (LoRA rank and targets against accuracy): its table, bad input, and one run end to
end on a tiny random Llama (never the real LLM here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from test_llm import save_tiny_llama


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "lora_sweep.py"
    spec = importlib.util.spec_from_file_location("benchmark_lora_sweep_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_and_table_from_hand_made_runs(bench):
    runs = [{"targets": "qv", "rank": 4, "seed": s, "trainable": 100, "accuracy": a, "examples_per_s": 2.0}
            for s, a in enumerate((0.70, 0.74))]
    runs += [{"targets": "all-linear", "rank": 4, "seed": s, "trainable": 300, "accuracy": a, "examples_per_s": 1.5}
             for s, a in enumerate((0.80, 0.80))]
    settings = bench.summarise(runs)
    assert [(r["targets"], r["accuracy_mean"], r["seeds"]) for r in settings] == [("qv", 0.72, 2), ("all-linear", 0.8, 2)]
    assert settings[0]["accuracy_std"] == pytest.approx(0.0283, abs=1e-4) and settings[1]["accuracy_std"] == 0
    text = bench.format_sweep({"hardware": "a box", "model": "m", "train": 10, "test": 20, "seeds": 2,
                               "batch_size": 8, "learning_rate": 1e-3, "settings": settings})
    lines = text.splitlines()
    assert lines[3].split() == ["qv", "4", "100", "72.0", "2.8", "2.00"]
    assert lines[4].split() == ["all-linear", "4", "300", "80.0", "0.0", "1.50"]
    assert lines[-1] == "spread of the setting means 8.0 points; mean seed std 1.4 points"


def test_bad_input_refused_before_loading(bench, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("loaded despite bad input")

    monkeypatch.setattr(bench.llm, "load_llm", never)
    for argv, message in ((["--seeds", "0"], "seeds must be an integer >= 1, got 0"),
                          (["--targets", "q,k"], "--targets takes qv, all-linear"),
                          (["--test-limit", "-3"], "test_limit must be an integer >= 1, got -3"),
                          (["--learning-rate", "0"], "learning_rate"),
                          (["--ranks", "4,x"], "--ranks takes comma-separated integers"),
                          (["--ranks", "0"], "--ranks takes integers >= 1")):
        try:
            code = bench.main(argv)
        except SystemExit as done:      # argparse's own errors (the --ranks type) exit from the parser
            code = done.code
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (argv, code, err)


def test_end_to_end_on_a_tiny_llama(bench, tmp_path, capsys):
    folder = save_tiny_llama(tmp_path / "model")
    assert bench.main(["--model", str(folder), "--ranks", "1,4", "--targets", "qv", "--seeds", "2",
                       "--train-limit", "16", "--test-limit", "6", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert [(r["rank"], r["seed"]) for r in result["runs"]] == [(1, 0), (1, 1), (4, 0), (4, 1)]
    trainable = [s["trainable"] for s in result["settings"]]
    assert trainable[1] == 4 * trainable[0]                    # r * (in + out) per adapted layer
    assert all(0 <= r["accuracy"] <= 1 and r["train_seconds"] > 0 for r in result["runs"])
    assert result["runs"][0]["final_loss"] != result["runs"][1]["final_loss"]   # the seed changes the run
    assert out[-2].startswith("spread of the setting means")


def test_cli_bench_suite_lora_sweep(tmp_path, capsys):
    from lightft.__main__ import main

    folder = save_tiny_llama(tmp_path / "model")
    assert main(["bench", "--suite", "lora_sweep", "--model", str(folder), "--seeds", "1", "--train-limit", "4",
                 "--eval-limit", "4"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(s["targets"], s["rank"]) for s in result["settings"]] == [
        (t, r) for t in ("qv", "all-linear") for r in (1, 4, 16, 64)]
    assert result["train"] == 4 and result["test"] == 4 and result["seeds"] == 1
