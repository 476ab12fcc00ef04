"""lightft.train: the fine-tune is deterministic, resumes after an interruption, saves and predicts.

On the tiny BERT of ``conftest.tiny_model_dir`` (seconds); one test, marked ``real``, fine-tunes the real
pretrained MiniLM on real sentences (``make real``)."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

import lightft
from lightft.train import finetune, predict, resolve_precision

BUDGET = dict(max_length=32, batch_size=8, epochs=2, train_limit=48, eval_limit=32, quiet=True,
              precision="fp32", checkpoint_every=2)


@pytest.fixture(scope="module")
def data():
    return lightft.load_dataset("rotten_tomatoes")


class _Interrupt(TrainerCallback):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt  # what Ctrl-C raises mid-epoch


def test_same_seed_same_metrics_and_resume_after_interruption(data, tmp_path, tiny_model_dir):
    a = finetune(str(tiny_model_dir), data, output_dir=tmp_path / "a", seed=0, **BUDGET)
    b = finetune(str(tiny_model_dir), data, output_dir=tmp_path / "b", seed=0, **BUDGET)
    assert a.metrics == b.metrics and a.steps == b.steps == 12
    assert [h.get("loss") for h in a.history] == [h.get("loss") for h in b.history]

    with pytest.raises(KeyboardInterrupt):  # stopped mid-epoch 1, after the checkpoint at step 4
        finetune(str(tiny_model_dir), data, output_dir=tmp_path / "c", seed=0, callbacks=[_Interrupt(5)], **BUDGET)
    assert (tmp_path / "c" / "checkpoint-4").is_dir()
    c = finetune(str(tiny_model_dir), data, output_dir=tmp_path / "c", seed=0, resume=True, **BUDGET)
    assert c.steps == a.steps
    assert c.metrics == pytest.approx(a.metrics, abs=1e-6)


@pytest.mark.parametrize("model", ["tiny", pytest.param("minilm-l6", marks=pytest.mark.real)])
def test_result_fields_files_and_predict(data, tmp_path, tiny_model_dir, model):
    r = finetune(str(tiny_model_dir) if model == "tiny" else model, data, output_dir=tmp_path, seed=1, **BUDGET)
    assert set(r.metrics) >= {"accuracy", "f1", "precision", "recall"}
    assert r.examples_per_second > 0 and r.tokens_per_second > r.examples_per_second
    assert r.peak_memory_bytes > 100 * 2**20 and r.precision == "fp32"
    assert any("eval_accuracy" in h for h in r.history)
    assert (tmp_path / "best" / "model.safetensors").exists()
    assert json.loads((tmp_path / "result.json").read_text())["steps"] == r.steps
    pred = predict(tmp_path, ["a gripping, funny film", "a dull, lifeless mess"])
    assert pred.probabilities.shape == (2, 2)
    assert set(pred.labels) <= {"negative", "positive"}
    assert abs(pred.probabilities.sum(1) - 1).max() < 1e-5


def test_existing_output_dir_is_refused_and_kept(data, tmp_path, tiny_model_dir):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        finetune(str(tiny_model_dir), data, output_dir=tmp_path, **BUDGET)
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": -1}, "batch_size must be an integer >= 1"),
        ({"max_length": 0}, "max_length must be an integer >= 1"),
        ({"max_length": 4096}, "exceeds the model's limit of 128"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"padding": "longest"}, "padding must be one of"),
        ({"epochs": 0}, r"epochs must be a number in \(0, inf\)"),
    ],
)
def test_bad_arguments(data, tmp_path, tiny_model_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        finetune(str(tiny_model_dir), data, output_dir=tmp_path / "x", **{**BUDGET, **kwargs})
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_fp16_on_cpu_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="loss scaling"):
        resolve_precision("fp16", device="cpu")
    name, reason = resolve_precision("auto", device="cpu")
    assert name in {"bf16", "fp32"} and reason


def test_predict_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved model"):
        predict(tmp_path, ["text"])
    with pytest.raises(ValueError, match="empty"):
        predict(tmp_path, [])


def test_frozen_embeddings_stay_put_and_the_rest_trains(data, tmp_path, tiny_model_dir):
    """freeze_embeddings (the lightweight recipe's lever): the word embeddings leave the fine-tune unchanged,
    the layers above them do not, and the Trainer's optimizer never sees the frozen matrix."""
    import torch

    before = lightft.load_model(str(tiny_model_dir))
    r = finetune(str(tiny_model_dir), data, output_dir=tmp_path, seed=0, freeze_embeddings=True,
                 group_by_length=True, **BUDGET)
    after = r.model.state_dict()
    name = next(n for n, _ in before.named_parameters() if n.endswith("word_embeddings.weight"))
    assert torch.equal(after[name], before.state_dict()[name])
    assert not r.model.get_input_embeddings().weight.requires_grad
    moved = [n for n, p in before.named_parameters() if "layer." in n and not torch.equal(after[n], p.detach())]
    assert moved, "no encoder weight changed: the fine-tune did not train"


@pytest.mark.parametrize("group_by_length", [False, True])
def test_test_predictions_are_in_the_test_splits_order(data, tmp_path, tiny_model_dir, group_by_length):
    """transformers 5 evaluates length-grouped runs in a shuffled order; the result undoes it, so the i-th
    prediction is the i-th test sentence's (what a paired test between two runs needs)."""
    import numpy as np

    r = finetune(str(tiny_model_dir), data, output_dir=tmp_path, seed=3, group_by_length=group_by_length, **BUDGET)
    test = data["test"].select(range(BUDGET["eval_limit"]))
    assert np.mean(r.test_predictions == np.array(test["label"])) == pytest.approx(r.metrics["accuracy"])
    again = predict(tmp_path, test["text"], max_length=BUDGET["max_length"])   # the saved best model, in order
    assert r.test_predictions.tolist() == again.indices
