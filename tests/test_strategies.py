"""lightft.strategies: which parameters train, LoRA counts, accumulation, int8, students and distillation."""

from __future__ import annotations

import math
import warnings

import datasets
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import lightft
from lightft import strategies

H, LAYERS = 16, 4
CONFIG = dict(vocab_size=30522, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=32,
              max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(**CONFIG, num_labels=2))


def batch(n: int = 8, length: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(1000, 2000, (n, length), generator=generator),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (n,), generator=generator)}


def trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_freeze_encoder_and_bitfit():
    model = strategies.freeze_encoder(tiny(), train_last_layers=1)
    names = trainable(model)
    assert names == {n for n, _ in model.named_parameters()
                     if n.startswith(("classifier.", "bert.pooler.", f"bert.encoder.layer.{LAYERS - 1}."))}
    head_only = strategies.freeze_encoder(tiny(), train_last_layers=0)
    assert lightft.count_parameters(head_only, trainable_only=True) == (H * H + H) + (H * 2 + 2)
    fit = strategies.bitfit(tiny())
    assert all(n.endswith(".bias") or n.startswith(("classifier.", "bert.pooler.")) for n in trainable(fit))
    biases = sum(p.numel() for n, p in fit.named_parameters() if n.endswith(".bias") and not n.startswith(("classifier", "bert.pooler")))
    assert biases == LAYERS * (4 * H + 32 + H + 2 * H) + H  # + embedding LayerNorm bias
    with pytest.raises(ValueError, match="0..4"):
        strategies.freeze_encoder(tiny(), train_last_layers=5)


def test_lora_counts_starts_unchanged_and_rejects_unknown_modules():
    base = tiny()
    x = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        expected = base.eval()(**x).logits
    lora = strategies.apply_lora(base, r=4, target_modules=("query", "value"))
    head = (H * H + H) + (H * 2 + 2)
    assert lightft.count_parameters(lora, trainable_only=True) == LAYERS * 2 * (2 * H * 4) + head
    with torch.no_grad():
        assert torch.allclose(lora.eval()(**x).logits, expected, atol=1e-6)  # B = 0 at the start
    assert strategies.saved_size(lora) < strategies.saved_size(tiny())
    with pytest.raises(ValueError, match="no linear layer named"):
        strategies.apply_lora(tiny(), target_modules=("q_lin",))


def test_accumulated_gradient_equals_whole_batch_gradient():
    model = tiny().eval()
    data = batch(n=10)
    model(**data).loss.backward()
    whole = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss = strategies.accumulate_gradients(model, data, micro_batch_size=4)  # 4 + 4 + 2
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, whole[name], atol=1e-6), name
    with torch.no_grad():
        assert loss == pytest.approx(float(model(**data).loss), abs=1e-5)


def test_quantize_int8_copies_shrinks_agrees_and_is_quiet():
    model = tiny().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        int8 = strategies.quantize_int8(model)
    assert isinstance(model.classifier, torch.nn.Linear)  # original untouched
    assert type(int8.classifier).__module__.startswith("torch.ao.nn.quantized.dynamic")
    x = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        assert torch.allclose(int8(**x).logits, model(**x).logits, atol=0.1)
    assert strategies.saved_size(int8.bert.encoder) < strategies.saved_size(model.bert.encoder)


def test_shallow_student_copies_every_other_layer():
    teacher = tiny().eval()
    student = strategies.shallow_student(teacher)
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    assert teacher.config.num_hidden_layers == LAYERS and len(teacher.bert.encoder.layer) == LAYERS
    assert torch.equal(student.bert.encoder.layer[1].output.dense.weight, teacher.bert.encoder.layer[2].output.dense.weight)
    x = {k: v for k, v in batch().items() if k != "labels"}
    assert student(**x).logits.shape == (8, 2)
    with pytest.raises(ValueError, match="layer indices"):
        strategies.shallow_student(teacher, keep_layers=[7])


def test_distillation_loss_by_hand():
    s, t, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([1])
    assert float(strategies.distillation_loss(s, t, y, alpha=0.0)) == pytest.approx(math.log(2))  # CE only
    assert float(strategies.distillation_loss(t, t, y, alpha=1.0)) == pytest.approx(0.0, abs=1e-7)
    # T = 1: KL([3/4, 1/4] || [1/2, 1/2]) = 3/4 log(3/2) + 1/4 log(1/2)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(strategies.distillation_loss(s, t, y, temperature=1.0, alpha=1.0)) == pytest.approx(kl, rel=1e-5)
    # T = 2: teacher logits halved -> probabilities sqrt(3)/(1+sqrt(3)); the T^2 = 4 factor
    p = math.sqrt(3) / (1 + math.sqrt(3))
    kl2 = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    got = strategies.distillation_loss(s, t, y, temperature=2.0, alpha=0.5)
    assert float(got) == pytest.approx(0.5 * 4 * kl2 + 0.5 * math.log(2), rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        strategies.distillation_loss(s, t, y, temperature=0)


@pytest.fixture(scope="module")
def tiny_data():
    texts = ["a fine warm film", "dull and slow", "i loved it", "awful acting", "great fun", "a bore"] * 4
    labels = [1, 0, 1, 0, 1, 0] * 4
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    split = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    return datasets.DatasetDict({"train": split, "validation": split.select(range(8)), "test": split.select(range(8))})


BUDGET = dict(max_length=16, batch_size=8, epochs=1, precision="fp32", quiet=True, tokenizer=None)


def test_finetune_keeps_the_best_lora_adapter_and_distill_runs(tiny_data, tmp_path):
    tokenizer = lightft.load_tokenizer("minilm-l6")
    lora = strategies.apply_lora(tiny(), r=2)
    result = lightft.finetune(lora, tiny_data, output_dir=tmp_path / "lora", **{**BUDGET, "tokenizer": tokenizer})
    assert (tmp_path / "lora" / "best" / "adapter_model.safetensors").exists() and result.steps == 3
    teacher = tiny(1)
    student = strategies.shallow_student(tiny(2))
    seen = []
    teacher.register_forward_hook(lambda m, a, o: seen.append(o.logits.shape))
    out = strategies.distill(student, teacher, tiny_data, output_dir=tmp_path / "kd",
                             **{**BUDGET, "tokenizer": tokenizer})
    assert out.steps == 3 and len(seen) == 3  # the teacher ran once per training step, not in evaluation
    assert not student._forward_hooks  # the hook is gone afterwards
    assert 0 <= out.metrics["accuracy"] <= 1


def _benchmark_script():
    """``benchmarks/strategies.py`` (the chapter's runner, a script of the repository, not of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "strategies.py"
    spec = importlib.util.spec_from_file_location("benchmark_strategies_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_script_prints_its_table_and_refuses_bad_input(capsys):
    bench = _benchmark_script()
    recipe = dict(test_accuracy=0.75, test_accuracy_std=None, train_seconds=20.0, examples_per_s=24.0,
                  tokens_per_s=700.0, mfu=0.125, step_share=0.8, mfu_steps=0.15625, learning_rate=5e-5)
    result = {"hardware": "a test box", "peak_gflops": {"fp32": 100.0, "bf16": 250.0}, "train_limit": 16,
              "eval_limit": 8, "seeds": 1,
              "headline": {"usual": recipe, "lightweight": {**recipe, "train_seconds": 10.0, "test_accuracy_std": 0.02},
                                            "speedup": 2.0, "accuracy_gap_points": -1.5,
                           "accuracy_gap_interval_points": [-4.25, 1.0], "accuracy_gap_verdict": "within noise"},
              "strategies": [{"strategy": "pad 128", "mode": "train", "precision": "fp32", "examples_per_s": 10.0,
                              "tokens_per_s": 300.0, "memory_increase_mib": 12.5, "mfu": 0.1},
                             {"strategy": "inference fp32, max 64", "mode": "inference", "precision": "fp32",
                              "examples_per_s": 50.0, "tokens_per_s": 900.0, "memory_increase_mib": 3.0, "mfu": None}]}
    lines = bench.format_benchmark(result).splitlines()
    assert lines[:3] == ["hardware: a test box", "peak matmul: fp32 100 GFLOP/s, bf16 250 GFLOP/s",
                         "headline (16 training / 8 test examples, mean of 1 seed(s), lr 5e-05 for both):"]
    assert lines[3].split()[-5:] == ["MFU", "in", "steps", "MFU", "steps"]
    assert lines[4].split() == ["usual", "0.750", "-", "20.0", "24.0", "700", "12.5%", "80%", "15.6%"]
    assert lines[5].split()[:3] == ["lightweight", "0.750", "0.020"]
    assert lines[6].strip() == ("speed-up 2.0x, accuracy difference -1.5 points "
                                "(95 % paired-bootstrap interval -4.2 to +1.0: within noise)")
    assert lines[-2].split()[-2:] == ["12.5", "10.0%"] and lines[-1].split()[-1] == "-"
    with pytest.raises(SystemExit) as done:
        bench.main(["--help"])
    assert done.value.code == 0 and "--skip-headline" in capsys.readouterr().out
    assert bench.main(["--steps", "0", "--skip-headline"]) == 2  # refused before anything is loaded or timed
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "steps must be an integer >= 1, got 0" in err[0]


def test_benchmark_lever_rows_follow_the_headline():
    bench = _benchmark_script()
    lever = dict(test_accuracy=0.7, test_accuracy_std=0.01, train_seconds=30.0, examples_per_s=40.0, mfu=0.3, speedup=1.0,
                 accuracy_vs_base_interval_points=[0.0, 0.0])
    result = {"hardware": "h", "peak_gflops": {"fp32": 100.0}, "train_limit": 16, "eval_limit": 8, "seeds": 2,
              "levers": [{"lever": "dynamic padding, max 64 (base)", **lever},
                         {"lever": "both (the recipe)", **lever, "train_seconds": 20.0, "speedup": 1.5}],
              "strategies": []}
    lines = bench.format_benchmark(result).splitlines()
    assert lines[2] == "levers (mean of 2 seed(s); speed-up over the base's training time):"
    assert lines[4].split()[-9:] == ["0.700", "0.010", "30.0", "40.0", "30.0%", "1.00x", "+0.0", "to", "+0.0"]
    assert lines[5].split()[:3] == ["both", "(the", "recipe)"] and lines[5].split()[-4] == "1.50x"


def test_each_lever_is_one_change_from_the_base(monkeypatch):
    bench = _benchmark_script()
    seen = []

    def fake(model, data, **kwargs):   # records what each fine-tune was asked for; times shrink with each call
        seen.append(kwargs)
        return {"accuracy": 0.5, "train_seconds": 10.0 / len(seen), "examples_per_s": 1.0, "tokens_per_s": 1.0,
                "peak_memory_bytes": 2**20, "model": None, "f1": 0.5,
                "predictions": np.array([0, 1, 1, 0])}

    monkeypatch.setattr(bench.measure, "measure_accuracy", fake)
    monkeypatch.setattr(bench.measure, "training_flops_per_token", lambda model, length: 1.0)
    rows = bench._levers("m", {"test": {"label": [0, 1, 0, 0, 1]}}, {"bf16": 1e9}, "bf16", train_limit=4, eval_limit=4,
                         seeds=1, learning_rate=1e-4)
    base = {k: v for k, v in seen[0].items() if k not in ("seed", "callbacks")}
    assert base["group_by_length"] is base["freeze_embeddings"] is False and base["precision"] == "bf16"
    changed = [{k for k in base if seen[i][k] != base[k]} for i in range(1, len(seen))]
    assert changed == [{"group_by_length"}, {"freeze_embeddings"}, {"group_by_length", "freeze_embeddings"},
                       {"group_by_length", "freeze_embeddings", "batch_size", "learning_rate"},
                       {"group_by_length", "freeze_embeddings", "epochs", "learning_rate"}]
    assert seen[4]["learning_rate"] == 2e-4 and seen[4]["batch_size"] == 2 * base["batch_size"]
    assert [r["speedup"] for r in rows] == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], abs=0.02)
    assert all(r["accuracy_vs_base_interval_points"] == [0.0, 0.0] and "_predictions" not in r for r in rows)


def test_benchmark_never_trains_in_emulated_bf16_beyond_a_tiny_run(tiny_model_dir):
    """On a machine whose "auto" precision is fp32, the strategy rows train in fp32, and bf16 appears only in
    one tiny, labelled row beside an fp32 row of the same size (its measured cost)."""
    import lightft

    bench = _benchmark_script()
    texts = ["a good film", "bad", "a long and very slow story", "great fun"] * 8
    rows = bench._strategy_rows(lambda: lightft.load_model(str(tiny_model_dir)), lightft.load_tokenizer(str(tiny_model_dir)),
                                texts, [i % 2 for i in range(len(texts))], {"fp32": 1e10}, "fp32", steps=1, seed=0)
    bf16 = [r for r in rows if r["precision"] == "bf16"]
    assert [r["strategy"] for r in bf16] == ["tiny pad 32, batch 2 (emulated bf16)"] and "emulated" in bf16[0]["note"]
    assert any(r["strategy"] == "tiny pad 32, batch 2 (fp32)" for r in rows)
    assert all(r["precision"] == "fp32" for r in rows if "tiny" not in r["strategy"])
    table = bench.format_benchmark({"hardware": "h", "peak_gflops": {"fp32": 10.0}, "strategies": rows})
    assert table.count("note: bf16 is emulated") == 1
