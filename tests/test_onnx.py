"""lightft.strategies.export_onnx / OnnxClassifier: the tiny BERT through ONNX Runtime, fp32 and int8."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

import lightft
from lightft import measure, strategies

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TEXTS = ["a good film", "bad", "the story was dull, long and far too slow for anyone to enjoy it",
         "superb cast", "an awful, awful script", "fine", "it was great fun from the first minute to the last",
         "not worth it"] * 3


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    """The tiny BERT, its test batches (sizes 8, 8, 8, then 5; lengths up to ~20 tokens), and both exports."""
    model = lightft.load_model(tiny_model_dir).eval()
    batches = measure.text_batches(lightft.load_tokenizer(tiny_model_dir), TEXTS[:-3] + TEXTS[:8], [i % 2 for i in
                                   range(29)], batch_size=8, max_length=32)
    folder = tmp_path_factory.mktemp("onnx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = {q: strategies.export_onnx(model, folder / f"{q}.onnx", max_length=32, quantize=q == "int8")
                 for q in ("fp32", "int8")}
    assert not [str(w.message) for w in caught if "onnx" in w.filename]  # the exporter's notes are silenced
    return model, batches, paths


def test_fp32_logits_equal_torch_for_every_batch_and_length(exported):
    model, batches, paths = exported
    runtime = strategies.OnnxClassifier(paths["fp32"])
    assert {b["input_ids"].shape[0] for b in batches} == {8, 5} and len({b["input_ids"].shape[1] for b in batches}) > 1
    one = {k: v[:1, :3] for k, v in batches[0].items() if k != "labels"}  # and one sentence of 3 tokens
    for b in batches + [one]:
        with torch.no_grad():
            expected = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        got = runtime(b["input_ids"], b["attention_mask"]).logits
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert runtime.session.get_session_options().intra_op_num_threads == torch.get_num_threads()


def test_int8_is_smaller_agrees_mostly_and_measure_works_unchanged(exported):
    model, batches, paths = exported
    assert paths["int8"].stat().st_size < paths["fp32"].stat().st_size / 2
    int8 = strategies.OnnxClassifier(paths["int8"])
    accuracy, predicted = measure.batch_accuracy(int8, batches)
    _, reference = measure.batch_accuracy(model, batches)
    assert 0 <= accuracy <= 1 and predicted.shape == (29,)
    assert (predicted == reference).float().mean() >= 0.8
    speed = measure.measure_inference(int8, batches)
    assert speed.examples == 29 and speed.examples_per_s > 0


def test_bad_input_says_what_is_accepted(exported, tmp_path, monkeypatch):
    model, _, paths = exported
    with pytest.raises(ValueError, match=r"\.onnx file in an existing folder"):
        strategies.export_onnx(model, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"\.onnx file in an existing folder"):
        strategies.export_onnx(model, tmp_path / "missing" / "model.onnx")
    with pytest.raises(ValueError, match="max_length must be an integer >= 8"):
        strategies.export_onnx(model, tmp_path / "model.onnx", max_length=4)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        strategies.export_onnx("minilm-l6", tmp_path / "model.onnx")
    with pytest.raises(FileNotFoundError, match="expected an existing .onnx file"):
        strategies.OnnxClassifier(tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match="expected an existing .onnx file"):
        strategies.OnnxClassifier(paths["fp32"].with_suffix(".txt"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModuleNotFoundError, match="pip install onnxruntime"):
        strategies.OnnxClassifier(paths["fp32"])
    with pytest.raises(ModuleNotFoundError, match="pip install onnxruntime"):
        strategies.export_onnx(model, tmp_path / "model.onnx")


def test_inference_benchmark_bad_input_is_one_line_exit_2(capsys):
    from lightft.__main__ import main

    assert main(["bench", "--suite", "inference", "--max-length", "4"]) == 2  # routed to benchmarks/inference.py
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["benchmarks/inference.py: error: max_length must be an integer >= 8, got 4"]
