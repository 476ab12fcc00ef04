"""benchmarks/llm.py (the LLM part's cost figures): its table, its options, bad input, and one run end to end
on a tiny random Llama (never the real LLM here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from test_llm import save_tiny_llama


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "llm.py"
    spec = importlib.util.spec_from_file_location("benchmark_llm_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_from_a_hand_made_result(bench):
    row = dict(setting="LoRA r=8 (q, v)", trainable=460800, seq_len=48, steps=3, tokens_per_s=128.8,
               examples_per_s=2.79, seconds_per_step=2.87, peak_memory_mib=1953, memory_increase_mib=789,
               gflops_per_token=0.65, mfu=0.636)
    gen = dict(batch=1, use_cache=True, prompt_tokens=38, new_tokens=64, seconds=4.32, ms_per_token=67.5,
               tokens_per_s=14.8)
    result = {"hardware": "a test box", "model": "m", "parameters": 134_515_008, "precision": "fp32",
              "batch_size": 8, "peak_gflops": {"fp32": 131.6}, "sft": [row],
              "generation": [gen, {**gen, "use_cache": False, "seconds": 13.14, "ms_per_token": 205.3,
                                   "tokens_per_s": 4.9, "slowdown_without_cache": 3.04}]}
    lines = bench.format_benchmark(result).splitlines()
    assert lines[:2] == ["hardware: a test box", "model: m (134.5 M parameters, fp32), peak matmul fp32 132 GFLOP/s"]
    assert lines[4].split() == ["LoRA", "r=8", "(q,", "v)", "460,800", "48", "128.8", "2.79", "2.87", "1,953",
                                "789", "63.6%"]
    assert lines[-2].split() == ["1", "on", "38", "64", "4.32", "67.5", "14.8"]
    assert lines[-1].split() == ["1", "off", "38", "64", "13.14", "205.3", "4.9", "3.04x"]


def test_help_and_bad_input_refused_before_loading(bench, capsys, monkeypatch):
    with pytest.raises(SystemExit) as done:
        bench.main(["--help"])
    assert done.value.code == 0 and "--new-tokens" in capsys.readouterr().out

    def never(*args, **kwargs):
        raise AssertionError("loaded or timed despite bad input")

    monkeypatch.setattr(bench.llm, "load_llm", never)
    monkeypatch.setattr(bench.measure, "peak_matmul_flops", never)
    for argv, message in ((["--steps", "0"], "steps must be an integer >= 1, got 0"),
                          (["--new-tokens", "-1"], "new_tokens must be an integer >= 1, got -1"),
                          (["--seq-len", "4"], "seq_len must be an integer >= 8, got 4"),
                          (["--model", ""], "--model must not be empty")):
        assert bench.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    with pytest.raises(SystemExit) as done:
        bench.main(["--steps", "three"])
    assert done.value.code == 2 and "invalid int value" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        bench.benchmark_llm(batch_size=0)


def test_runs_end_to_end_on_a_tiny_llama(bench, tmp_path, capsys):
    folder = save_tiny_llama(tmp_path / "tiny")
    assert bench.main(["--model", str(folder), "--steps", "1", "--new-tokens", "3", "--batch-size", "2",
                       "--seq-len", "16"]) == 0
    *table, last = capsys.readouterr().out.strip().splitlines()
    result = json.loads(last)
    assert [r["setting"] for r in result["sft"]] == ["LoRA r=8 (q, v)", "QLoRA r=8 (q, v), NF4 base",
                                                    "full fine-tuning"]
    lora, qlora, full = result["sft"]
    assert lora["trainable"] == qlora["trainable"] < full["trainable"] == result["parameters"]
    assert all(0 < r["mfu"] and r["seq_len"] <= 16 and r["tokens_per_s"] > 0 for r in result["sft"])
    assert [(g["batch"], g["use_cache"], g["new_tokens"]) for g in result["generation"]] == [
        (1, True, 3), (1, False, 3), (8, True, 3), (8, False, 3)]
    assert all("slowdown_without_cache" in g for g in result["generation"][1::2])
    assert len(table) == 3 + 1 + 3 + 2 + 4
