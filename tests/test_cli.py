"""The command line: one JSON line of metrics, predictions, and one-line errors with exit code 2.

The commands that train run as real subprocesses (``python -m lightft ...``) on the tiny BERT of
``conftest.tiny_model_dir``; the bad-input cases call the same ``main(argv)`` in this process (no
interpreter start-up per case), except the argument-parser ones, which are instant either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightft", *args], capture_output=True, text=True, env=ENV,
                          timeout=600)


def run_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """``main(args)`` in this process, with what a subprocess would report: exit status, stdout, stderr."""
    from lightft.__main__ import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def test_finetune_then_predict(tmp_path, capsys, tiny_model_dir, toy_csv):
    out = tmp_path / "rt"
    done = run("finetune", "--output", str(out), "--model", str(tiny_model_dir), "--data", str(toy_csv),
               "--train-limit", "32", "--eval-limit", "32",
               "--epochs", "1", "--max-length", "32", "--precision", "fp32", "--quiet")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 <= summary["test"]["accuracy"] <= 1 and summary["precision"] == "fp32"
    pred = run_here(capsys, "predict", "--model", str(out), "a gripping, funny film", "a dull mess")
    assert pred.returncode == 0, pred.stderr
    lines = [json.loads(line) for line in pred.stdout.strip().splitlines()]
    assert [line["text"] for line in lines] == ["a gripping, funny film", "a dull mess"]
    assert all(abs(sum(line["probabilities"]) - 1) < 1e-3 for line in lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["finetune", "--output", "{tmp}/a", "--batch-size", "-1"], "positive integer"),
        (["finetune", "--output", "{tmp}/a", "--model", "no-such-model"], "minilm-l6"),
        (["finetune", "--output", "{tmp}/a", "--data", "no-such-dataset"], "rotten_tomatoes"),
        (["finetune", "--output", "{tmp}/a", "--data", "{tmp}/missing.csv"], "no such file"),
        (["finetune", "--output", "{tmp}/full"], "not empty"),
        (["predict", "--model", "{tmp}/nothing", "text"], "no saved model"),
        (["finetune"], "required"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    done = run_here(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert not (tmp_path / "a").exists()
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_bench_prints_one_json_line_of_measurements(capsys, tiny_model_dir, toy_csv):
    done = run_here(capsys, "bench", "--model", str(tiny_model_dir), "--data", str(toy_csv), "--train-limit", "32", "--eval-limit", "32", "--epochs", "1", "--max-length", "32",
               "--precision", "fp32")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["precision"] == "fp32" and summary["steps"] == 2  # 32 examples / batch 16, one epoch
    assert 0 <= summary["test_accuracy"] <= 1 and 0 <= summary["test_f1"] <= 1
    assert summary["train_seconds"] > 0 and summary["examples_per_second"] > 0 and summary["peak_memory_mib"] > 0
    assert summary["hardware"]


@pytest.mark.parametrize("args, message", [(["--epochs", "0"], "positive number"),
                                           (["--data", "no-such-dataset"], "rotten_tomatoes")])
def test_bench_bad_input_one_line_exit_2(capsys, args, message):
    done = run_here(capsys, "bench", "--train-limit", "16", *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_bench_strategies_suite_prints_a_table_and_one_json_line(capsys, tiny_model_dir, toy_csv):
    done = run_here(capsys, "bench", "--suite", "strategies", "--model", str(tiny_model_dir), "--data", str(toy_csv),
                    "--skip-headline", "--steps", "1", "--train-limit", "16")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("hardware:") and "peak matmul" in lines[1]
    result = json.loads(lines[-1])
    assert "headline" not in result and result["peak_gflops"]["fp32"] > 0
    names = [row["strategy"] for row in result["strategies"]]
    assert "pad 128" in names and "LoRA r=8, max 64" in names and "gradient checkpointing, pad 128" in names
    assert all(row["examples_per_s"] > 0 for row in result["strategies"])
    assert any("LoRA r=8" in line for line in lines[:-1])  # the table names every strategy


def test_bench_bad_suite_one_line_exit_2():
    done = run("bench", "--suite", "everything")   # a real subprocess: argparse's errors never import torch
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "invalid choice" in done.stderr
