"""Bad input, one table: every row is a wrong call to the public API or the CLI, answered by a clear
error that names the problem, with nothing overwritten and nothing half-written.

API rows: ``(error type, words the message must contain, call)``. CLI rows: the argument list; the CLI
must exit with status 2 and print exactly one line to stderr, with no traceback. For every row the
files in the row's scratch folder and in the shared fixtures are compared before and after the call
(names, sizes and contents): an error that leaves a file behind, or touches one, fails the row.

The CLI rows run ``lightft.__main__.main`` in-process (fast); tests/test_cli.py and tests/test_faults.py
run the real ``python -m lightft`` in a subprocess.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import datasets
import pytest
import torch

import lightft
from lightft.__main__ import main as cli_main
from lightft.data import DataFileError
from lightft.hub import HubUnreachableError

# --------------------------------------------------------------------------- shared fixtures


def _write_fixtures(root: Path) -> None:
    """Small bad files, made once: data files, model folders with broken or pickle-only weights."""
    (root / "empty.csv").write_text("")
    (root / "header_only.csv").write_text("text,label\n")
    (root / "no_label.csv").write_text("text\na fine film\n")
    (root / "negative.csv").write_text("text,label\na fine film,1\na dull film,-1\n")
    (root / "word_label.csv").write_text("text,label\na fine film,positive\n")
    (root / "float_label.csv").write_text("text,label\na fine film,0.5\n")
    (root / "broken.jsonl").write_text('{"text": "a fine film", "label": 1}\n{"text": "a dull film", "label": \n')
    (root / "list.jsonl").write_text('["a fine film", 1]\n')
    (root / "latin1.csv").write_bytes("text,label\ncaf\xe9 cr\xe8me,1\n".encode("latin-1"))
    (root / "notes.txt").write_text("text,label\na fine film,1\n")
    (root / "five.csv").write_text("text,label\n" + "".join(f"film number {i},{i % 2}\n" for i in range(5)))
    (root / "a_folder.csv").mkdir()
    src = lightft.models.embedded_model_path("minilm-l6")
    small = [p for p in src.iterdir() if p.is_file() and p.name != "model.safetensors"]
    for name in ("corrupt", "truncated", "pickle_only", "bad_config"):
        (root / name).mkdir()
        for p in small:
            shutil.copy2(p, root / name / p.name)
    weights = (src / "model.safetensors").read_bytes()
    (root / "corrupt" / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 64)
    (root / "truncated" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    torch.save({"weight": torch.zeros(2)}, root / "pickle_only" / "pytorch_model.bin")
    (root / "bad_config" / "model.safetensors").write_bytes(weights)
    (root / "bad_config" / "config.json").write_text('{"model_type": "bert", ')
    (root / "a_file").write_text("not a model folder")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    _write_fixtures(root)
    return root


def _snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """Every file and folder under ``roots``: relative name -> (size, sha256); folders -> (-1, "")."""
    out: dict[str, tuple[int, str]] = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            key = f"{root.name}/{p.relative_to(root)}"
            if p.is_dir() and not p.is_symlink():
                out[key] = (-1, "")
            else:
                data = p.read_bytes()
                out[key] = (len(data), hashlib.sha256(data).hexdigest())
    return out


# --------------------------------------------------------------------------- small objects the rows use


def _tiny_model(max_positions: int = 64, num_labels: int = 2):
    from transformers import BertConfig

    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=max_positions)
    return lightft.build_encoder(config, with_head=True, num_labels=num_labels)


def _data(labels=(0, 1), splits=("train", "validation", "test"), n: int = 8, columns=("text", "label"),
          bad: dict | None = None) -> datasets.DatasetDict:
    """A small DatasetDict with integer labels cycling through ``labels``; ``bad`` replaces one split's labels."""
    out = {}
    for split in splits:
        rows = {"text": [f"{split} sentence {i}" for i in range(n)],
                "label": [labels[i % len(labels)] for i in range(n)]}
        if bad and split in bad:
            rows["label"] = bad[split]
        out[split] = datasets.Dataset.from_dict({c: rows[c] for c in columns})
    return datasets.DatasetDict(out)


def _q(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


def _nan_q():
    q = torch.randn(1, 3, 4)
    q[0, 1, 2] = float("nan")
    return q


FT = dict(max_length=16, batch_size=4, epochs=1, quiet=True, precision="fp32")  # fails before training


@dataclass(frozen=True)
class Row:
    id: str
    error: type[BaseException] | None  # None: a CLI row (exit 2, one stderr line)
    words: tuple[str, ...]
    call: Callable[[Path, Path], Any] | None = None  # (fixtures, scratch) -> anything
    argv: tuple[str, ...] = ()


def api(id, error, words, call):
    return Row(id, error, tuple(words.split("|")), call=call)


def cli(id, words, *argv):
    return Row(id, None, tuple(words.split("|")), argv=argv)


ROWS = [
    # ---- attention: shapes, dtypes, NaN, masks
    api("attn-list-not-tensor", TypeError, "q must be a torch.Tensor",
        lambda f, s: lightft.scaled_dot_product_attention([[1.0]], _q(1, 2), _q(1, 2))),
    api("attn-int-dtype", TypeError, "floating-point|int64",
        lambda f, s: lightft.scaled_dot_product_attention(torch.ones(2, 3, dtype=torch.long), _q(2, 3), _q(2, 3))),
    api("attn-1d", ValueError, "at least 2 dimensions",
        lambda f, s: lightft.scaled_dot_product_attention(_q(4), _q(4), _q(4))),
    api("attn-dk-mismatch", ValueError, "same last dimension d_k",
        lambda f, s: lightft.scaled_dot_product_attention(_q(1, 3, 4), _q(1, 3, 5), _q(1, 3, 5))),
    api("attn-lk-mismatch", ValueError, "L_k",
        lambda f, s: lightft.scaled_dot_product_attention(_q(1, 3, 4), _q(1, 3, 4), _q(1, 2, 4))),
    api("attn-nan", ValueError, "non-finite|NaN",
        lambda f, s: lightft.scaled_dot_product_attention(_nan_q(), _q(1, 3, 4), _q(1, 3, 4))),
    api("attn-mixed-dtypes", TypeError, "one dtype",
        lambda f, s: lightft.scaled_dot_product_attention(_q(2, 4), _q(2, 4, dtype=torch.float64), _q(2, 4))),
    api("attn-float-mask", TypeError, "boolean mask|padding_mask",
        lambda f, s: lightft.scaled_dot_product_attention(_q(1, 3, 4), _q(1, 3, 4), _q(1, 3, 4),
                                                          mask=torch.ones(3, 3))),
    api("attn-mask-shape", ValueError, "does not broadcast",
        lambda f, s: lightft.scaled_dot_product_attention(_q(1, 3, 4), _q(1, 3, 4), _q(1, 3, 4),
                                                          mask=torch.ones(2, 5, dtype=torch.bool))),
    api("attn-mask-row-blocked", ValueError, "blocks every key",
        lambda f, s: lightft.scaled_dot_product_attention(_q(3, 4), _q(3, 4), _q(3, 4),
                                                          mask=torch.zeros(3, 3, dtype=torch.bool))),
    api("mha-not-divisible", ValueError, "divisible",
        lambda f, s: lightft.MultiHeadSelfAttention(10, 3)),
    api("mha-zero-size", ValueError, "d_model must be an integer >= 1|0",
        lambda f, s: lightft.MultiHeadSelfAttention(0, 1)),
    api("mha-wrong-input-shape", ValueError, "(batch, seq_len, 8)",
        lambda f, s: lightft.MultiHeadSelfAttention(8, 2)(_q(3, 8))),
    api("padding-mask-not-01", ValueError, "only 0",
        lambda f, s: lightft.padding_mask(torch.tensor([[1, 2, 0]]))),
    api("causal-mask-negative", ValueError, "length must be an integer >= 1|-3",
        lambda f, s: lightft.causal_mask(-3)),
    # ---- datasets: names, files, labels
    api("data-not-a-name", TypeError, "dataset name or a file path",
        lambda f, s: lightft.load_dataset(42)),
    api("data-unknown-name", HubUnreachableError, "no-such-dataset|rotten_tomatoes",
        lambda f, s: lightft.load_dataset("no-such-dataset")),
    api("data-hub-name-offline", HubUnreachableError, "stanfordnlp/sst2|cannot be reached",
        lambda f, s: lightft.load_dataset("stanfordnlp/sst2")),
    api("data-missing-file", DataFileError, "no such file",
        lambda f, s: lightft.load_dataset(f / "missing.csv")),
    api("data-folder-not-file", DataFileError, "not a regular file",
        lambda f, s: lightft.load_dataset(f / "a_folder.csv")),
    api("data-empty-file", DataFileError, "empty.csv|empty",
        lambda f, s: lightft.load_dataset(f / "empty.csv")),
    api("data-header-only", DataFileError, "no data rows",
        lambda f, s: lightft.load_dataset(f / "header_only.csv")),
    api("data-missing-column", DataFileError, "missing column|label",
        lambda f, s: lightft.load_dataset(f / "no_label.csv")),
    api("data-negative-label", DataFileError, "row 3|negative",
        lambda f, s: lightft.load_dataset(f / "negative.csv")),
    api("data-word-label", DataFileError, "row 2|'positive'|not an integer",
        lambda f, s: lightft.load_dataset(f / "word_label.csv")),
    api("data-float-label", DataFileError, "0.5|not an integer",
        lambda f, s: lightft.load_dataset(f / "float_label.csv")),
    api("data-broken-jsonl", DataFileError, "row 2|not valid JSON",
        lambda f, s: lightft.load_dataset(f / "broken.jsonl")),
    api("data-jsonl-not-object", DataFileError, "row 1|JSON object",
        lambda f, s: lightft.load_dataset(f / "list.jsonl")),
    api("data-not-utf8", DataFileError, "UTF-8",
        lambda f, s: lightft.load_dataset(f / "latin1.csv")),
    api("data-unsupported-extension", DataFileError, "unsupported extension|.txt",
        lambda f, s: lightft.load_dataset(f / "notes.txt")),
    api("data-too-few-rows", ValueError, "5 usable|at least 10",
        lambda f, s: lightft.load_dataset(f / "five.csv")),
    api("data-bad-seed", ValueError, "seed must be an integer >= 0",
        lambda f, s: lightft.load_dataset("rotten_tomatoes", seed="0")),
    # ---- models and checkpoints
    api("model-unknown-name", HubUnreachableError, "no-such-model|minilm-l6",
        lambda f, s: lightft.load_model("no-such-model")),
    api("model-hub-name-offline", HubUnreachableError, "distilbert-base-uncased|cannot be reached",
        lambda f, s: lightft.load_model("distilbert-base-uncased")),
    api("model-missing-folder", FileNotFoundError, "no such model folder",
        lambda f, s: lightft.load_model(f / "nowhere" / "model")),
    api("model-file-not-folder", ValueError, "must be a folder",
        lambda f, s: lightft.load_model(f / "a_file")),
    api("model-corrupt-safetensors", ValueError, "model.safetensors|corrupted or truncated",
        lambda f, s: lightft.load_model(f / "corrupt")),
    api("model-truncated-safetensors", ValueError, "model.safetensors|corrupted or truncated",
        lambda f, s: lightft.load_model(f / "truncated")),
    api("model-pickle-only", FileNotFoundError, "pytorch_model.bin|safetensors weights only",
        lambda f, s: lightft.load_model(f / "pickle_only")),
    api("model-bad-config", ValueError, "config.json|not valid JSON",
        lambda f, s: lightft.load_model(f / "bad_config")),
    api("model-zero-labels", ValueError, "num_labels must be an integer >= 1",
        lambda f, s: lightft.load_model("minilm-l6", 0)),
    api("model-one-label-name", ValueError, "at least two class names",
        lambda f, s: lightft.load_model("minilm-l6", labels=["only"])),
    api("model-trust-remote-code", ValueError, "trust_remote_code=True is refused",
        lambda f, s: lightft.load_model("minilm-l6", trust_remote_code=True)),
    api("model-pickle-weights-asked", ValueError, "use_safetensors=False is refused",
        lambda f, s: lightft.load_model("minilm-l6", use_safetensors=False)),
    api("count-not-a-model", TypeError, "torch.nn.Module",
        lambda f, s: lightft.count_parameters("minilm-l6")),
    # ---- finetune: sizes, precision, data, output folder
    api("ft-zero-max-length", ValueError, "max_length must be an integer >= 1",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "out", **{**FT, "max_length": 0})),
    api("ft-negative-batch", ValueError, "batch_size must be an integer >= 1",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "out", **{**FT, "batch_size": -4})),
    api("ft-zero-epochs", ValueError, "epochs must be a number in (0, inf)",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "out", **{**FT, "epochs": 0})),
    api("ft-learning-rate", ValueError, "learning_rate",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "out", **{**FT, "learning_rate": 5.0})),
    api("ft-fp16-on-cpu", ValueError, "fp16|refused on a CPU",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "out", **{**FT, "precision": "fp16"})),
    api("ft-unknown-precision", ValueError, "precision must be one of|'fp8'",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "out", **{**FT, "precision": "fp8"})),
    api("ft-unknown-padding", ValueError, "padding must be one of",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "out", **{**FT, "padding": "left"})),
    api("ft-max-length-beyond-model", ValueError, "max_length=128 exceeds the model's limit of 64",
        lambda f, s: lightft.finetune(_tiny_model(64), _data(), output_dir=s / "out", **{**FT, "max_length": 128})),
    api("ft-missing-split", ValueError, "train, validation and test",
        lambda f, s: lightft.finetune(_tiny_model(), _data(splits=("train", "test")), output_dir=s / "out", **FT)),
    api("ft-missing-label-column", ValueError, "columns text and label",
        lambda f, s: lightft.finetune(_tiny_model(), _data(columns=("text",)), output_dir=s / "out", **FT)),
    api("ft-empty-split", ValueError, "'validation'|empty",
        lambda f, s: lightft.finetune(_tiny_model(), datasets.DatasetDict(
            {**_data(), "validation": _data()["validation"].select([])}), output_dir=s / "out", **FT)),
    api("ft-negative-label", ValueError, "label -1|out of range",
        lambda f, s: lightft.finetune(_tiny_model(), _data(bad={"train": [0, 1, -1, 0, 1, 0, 1, 0]}),
                                      output_dir=s / "out", **FT)),
    api("ft-test-label-out-of-range", ValueError, "data['test'] has label 7|0..1",
        lambda f, s: lightft.finetune(_tiny_model(), _data(bad={"test": [0, 1, 7, 0, 1, 0, 1, 0]}),
                                      output_dir=s / "out", **FT)),
    api("ft-float-labels", TypeError, "labels must be integers",
        lambda f, s: lightft.finetune(_tiny_model(), _data(bad={"train": [0.5] * 8}), output_dir=s / "out", **FT)),
    api("ft-head-mismatch", ValueError, "head has 2 classes but the data has 3",
        lambda f, s: lightft.finetune(_tiny_model(), _data(labels=(0, 1, 2)), output_dir=s / "out", **FT)),
    api("ft-output-not-empty", FileExistsError, "not empty|overwrite=True",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "full", **FT)),
    api("ft-output-is-file", ValueError, "not a folder",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "full" / "keep.txt", **FT)),
    api("ft-output-under-file", PermissionError, "not writable",
        lambda f, s: lightft.finetune(_tiny_model(), _data(), output_dir=s / "full" / "keep.txt" / "run", **FT)),
    api("ft-not-a-model", TypeError, "torch.nn.Module",
        lambda f, s: lightft.finetune(object(), _data(), output_dir=s / "out", **FT)),
    # ---- predict
    api("predict-no-texts", ValueError, "texts is empty",
        lambda f, s: lightft.predict(f / "corrupt", [])),
    api("predict-not-strings", TypeError, "list of strings",
        lambda f, s: lightft.predict(f / "corrupt", [1, 2])),
    api("predict-no-model", FileNotFoundError, "no saved model",
        lambda f, s: lightft.predict(s / "nothing", ["a film"])),
    api("predict-pickle-only", FileNotFoundError, "safetensors weights only",
        lambda f, s: lightft.predict(f / "pickle_only", ["a film"])),
    api("predict-truncated", ValueError, "corrupted or truncated",
        lambda f, s: lightft.predict(f / "truncated", ["a film"])),
    # ---- metrics
    api("metrics-length-mismatch", ValueError, "differ in length",
        lambda f, s: lightft.classification_metrics([0, 1, 1], [0, 1])),
    api("metrics-empty", ValueError, "empty",
        lambda f, s: lightft.classification_metrics([], [])),
    api("metrics-label-out-of-range", ValueError, "class index 5|0..1",
        lambda f, s: lightft.classification_metrics([0, 1, 5], [0, 1, 1], num_labels=2)),
    # ---- the command line: exit 2, one line on stderr
    cli("cli-zero-batch", "positive integer", "finetune", "--output", "{s}/out", "--batch-size", "0"),
    cli("cli-negative-max-length", "positive integer", "finetune", "--output", "{s}/out", "--max-length", "-8"),
    cli("cli-epochs-not-number", "positive number", "finetune", "--output", "{s}/out", "--epochs", "two"),
    cli("cli-unknown-precision", "invalid choice|fp8", "finetune", "--output", "{s}/out", "--precision", "fp8"),
    cli("cli-fp16-on-cpu", "refused on a CPU", "finetune", "--output", "{s}/out", "--precision", "fp16"),
    cli("cli-unknown-command", "invalid choice", "train"),
    cli("cli-unknown-model", "no-such-model|minilm-l6", "finetune", "--output", "{s}/out", "--model", "no-such-model"),
    cli("cli-hub-model-offline", "cannot be reached", "finetune", "--output", "{s}/out", "--model",
        "distilbert-base-uncased"),
    cli("cli-unknown-data", "rotten_tomatoes", "finetune", "--output", "{s}/out", "--data", "no-such-dataset"),
    cli("cli-empty-data-file", "empty", "finetune", "--output", "{s}/out", "--data", "{f}/empty.csv"),
    cli("cli-negative-label-file", "negative", "finetune", "--output", "{s}/out", "--data", "{f}/negative.csv"),
    cli("cli-output-not-empty", "not empty", "finetune", "--output", "{s}/full"),
    cli("cli-output-is-file", "not a folder", "finetune", "--output", "{s}/full/keep.txt"),
    cli("cli-corrupt-checkpoint", "corrupted or truncated", "finetune", "--output", "{s}/out", "--model", "{f}/corrupt"),
    cli("cli-pickle-checkpoint", "safetensors weights only", "finetune", "--output", "{s}/out", "--model",
        "{f}/pickle_only"),
    cli("cli-max-length-beyond-model", "exceeds the model's limit of 512", "finetune", "--output", "{s}/out",
        "--max-length", "4096", "--train-limit", "16", "--eval-limit", "16"),
    cli("cli-predict-truncated", "corrupted or truncated", "predict", "--model", "{f}/truncated", "a film"),
    cli("cli-predict-nothing", "no saved model", "predict", "--model", "{s}/nothing", "a film"),
    cli("cli-bench-zero-epochs", "positive number", "bench", "--epochs", "0"),
]


def test_the_table_is_large_and_ids_are_unique():
    assert len(ROWS) >= 30
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert sum(r.error is None for r in ROWS) >= 10, "the CLI needs its own rows"


_GPU_ONLY_REFUSALS = {"ft-fp16-on-cpu", "cli-fp16-on-cpu"}  # on a GPU, fp16 is a valid choice


@pytest.mark.parametrize("row", [
    pytest.param(r, id=r.id, marks=pytest.mark.skipif(
        r.id in _GPU_ONLY_REFUSALS and torch.cuda.is_available(), reason="fp16 is refused on a CPU only"))
    for r in ROWS
])
def test_bad_input_is_refused_clearly_and_nothing_is_written(row: Row, fixtures: Path, tmp_path: Path, capsys):
    scratch = tmp_path / "scratch"
    (scratch / "full").mkdir(parents=True)
    (scratch / "full" / "keep.txt").write_text("the reader's earlier run")
    before = _snapshot(fixtures, scratch)
    if row.error is not None:
        with pytest.raises(row.error) as caught:
            row.call(fixtures, scratch)
        message = str(caught.value)
    else:
        argv = [a.format(f=fixtures, s=scratch) for a in row.argv]
        try:
            status = cli_main(argv)
        except SystemExit as exit_:  # argparse's own errors
            status = exit_.code
        captured = capsys.readouterr()
        assert status == 2, f"exit status {status}, expected 2; stderr: {captured.err}"
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{captured.err}"
        assert "Traceback" not in captured.err
        message = lines[0]
    for word in row.words:
        assert word in message, f"the message does not name the problem ({word!r}): {message}"
    assert _snapshot(fixtures, scratch) == before, "the failed call wrote, removed or changed files"
