"""Security: weights only from safetensors, never ``trust_remote_code``, ``torch.load`` only with
``weights_only=True``, and nothing written outside the chosen output folder.

Each rule is proved twice: by reading the source (every Python file of the package, scripts and
benchmarks, and every code cell of the book) and by running the load paths on booby-trapped files
whose loading, if it ever happened, would create a marker file.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import datasets
import pytest
import torch

import lightft
from lightft.train import finetune, predict

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "lightft").rglob("*.py"), *(ROOT / "scripts").rglob("*.py"),
                  *(ROOT / "benchmarks").rglob("*.py")])
CHAPTERS = sorted((ROOT / "book").glob("*.md"))


# --------------------------------------------------------------------------- the source


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_there_is_source_to_check():
    assert len(SOURCES) >= 10 and any(p.name == "models.py" for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_source_never_unpickles_or_trusts_remote_code(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node, name in _calls(tree):
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        if name.endswith("torch.load"):
            flags = {k.arg: k.value for k in node.keywords}
            assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, \
                f"{where}: torch.load without weights_only=True"
        assert not re.fullmatch(r"(pickle|cPickle|dill|joblib|cloudpickle)\.(load|loads)|pd\.read_pickle|"
                                r"pandas\.read_pickle", name), f"{where}: {name} unpickles"
        for keyword in node.keywords:
            if keyword.arg == "trust_remote_code":
                assert isinstance(keyword.value, ast.Constant) and keyword.value.value is False, \
                    f"{where}: trust_remote_code must be the constant False"
            if keyword.arg == "use_safetensors":
                assert isinstance(keyword.value, ast.Constant) and keyword.value.value is True, \
                    f"{where}: use_safetensors must be the constant True"
            if keyword.arg == "weights_only":
                assert isinstance(keyword.value, ast.Constant) and keyword.value.value is True, \
                    f"{where}: weights_only must be the constant True"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_chapters_never_unpickle_or_trust_remote_code(md: Path):
    text = md.read_text(encoding="utf-8")
    code = "\n".join(re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, flags=re.S))
    assert not re.search(r"trust_remote_code\s*=\s*True", code), f"{md.name}: trust_remote_code=True"
    assert not re.search(r"use_safetensors\s*=\s*False", code), f"{md.name}: use_safetensors=False"
    for call in re.findall(r"torch\.load\([^)]*\)", code):
        assert "weights_only=True" in call, f"{md.name}: {call} without weights_only=True"
    assert not re.search(r"\bpickle\.loads?\(|read_pickle\(", code), f"{md.name}: unpickles"


# --------------------------------------------------------------------------- booby traps


class _Trap:
    """Unpickling this object creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def _pickle_only_checkpoint(folder: Path, marker: Path) -> Path:
    src = lightft.models.embedded_model_path("minilm-l6")
    folder.mkdir()
    for p in src.iterdir():
        if p.is_file() and p.name != "model.safetensors":
            shutil.copy2(p, folder / p.name)
    torch.save({"trap": _Trap(marker)}, folder / "pytorch_model.bin")
    return folder


def test_pickle_only_checkpoints_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    folder = _pickle_only_checkpoint(tmp_path / "pickled", marker)
    with pytest.raises(FileNotFoundError, match="safetensors weights only"):
        lightft.load_model(folder)
    with pytest.raises(FileNotFoundError, match="safetensors weights only"):
        lightft.load_model(folder, num_labels=None)
    with pytest.raises(FileNotFoundError, match="safetensors weights only"):
        predict(folder, ["a film"])
    with pytest.raises(ValueError, match="use_safetensors=False is refused"):
        lightft.load_model(folder, use_safetensors=False)
    assert not marker.exists(), "a pickle was loaded"
    # the trap works: plain torch.load without weights_only=True would have run it
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_remote_code_in_a_model_folder_is_never_run(tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "remote"
    shutil.copytree(lightft.models.embedded_model_path("minilm-l6"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel",
                          "AutoModelForSequenceClassification": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    with pytest.raises(ValueError, match="trust_remote_code=True is refused"):
        lightft.load_model(folder, trust_remote_code=True)
    model = lightft.load_model(folder)  # the BERT weights load with the library's own code
    assert type(model).__module__.startswith("transformers.")
    assert not marker.exists(), "code shipped with the model was run"


def test_every_from_pretrained_call_is_safetensors_only_without_remote_code(monkeypatch):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    seen = []
    for cls in (AutoModel, AutoModelForSequenceClassification, AutoTokenizer):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, **kwargs):
            seen.append((klass.__name__, kwargs))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    lightft.load_model("minilm-l6")
    lightft.load_model("minilm-l6", num_labels=None)
    lightft.load_tokenizer("minilm-l6")
    models = [kw for name, kw in seen if name != "AutoTokenizer"]
    assert len(models) == 2
    assert all(kw.get("use_safetensors") is True and kw.get("trust_remote_code") is False for kw in models)
    assert all(not kw.get("trust_remote_code") for _, kw in seen)


# --------------------------------------------------------------------------- training writes


def _tiny_model():
    from transformers import BertConfig

    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    return lightft.build_encoder(config, with_head=True, num_labels=2)


def _tiny_data() -> datasets.DatasetDict:
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"text": [f"{split} film {i}" for i in range(16)],
                                           "label": [i % 2 for i in range(16)]})
        for split in ("train", "validation", "test")
    })


BUDGET = dict(max_length=16, batch_size=8, epochs=1, quiet=True, precision="fp32", checkpoint_every=1)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_training_writes_only_inside_the_output_folder_and_resume_loads_weights_only(tmp_path, monkeypatch):
    cwd, box = tmp_path / "cwd", tmp_path / "box"
    cwd.mkdir()
    box.mkdir()
    (box / "neighbour.txt").write_text("mine")
    monkeypatch.chdir(cwd)
    out = box / "run"
    finetune(_tiny_model(), _tiny_data(), output_dir=out, **BUDGET)
    assert _tree(cwd) == set(), "training wrote into the working directory"
    assert _tree(box) - {"neighbour.txt"} == {f"run/{p}" for p in _tree(out)} | {"run"}
    assert (box / "neighbour.txt").read_text() == "mine"
    assert {p.name for p in out.rglob("*.safetensors")} == {"model.safetensors"}
    # model weights are never pickled (the Trainer's own training_args.bin is written, never read back)
    assert not list(out.rglob("pytorch_model*")) and {p.name for p in out.rglob("*.bin")} <= {"training_args.bin"}

    # resume from checkpoint-1: every torch.load (optimizer, scheduler, RNG state) is weights-only
    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    shutil.rmtree(out / "checkpoint-2")
    finetune(_tiny_model(), _tiny_data(), output_dir=out, resume=True, **BUDGET)
    assert loads and all(flag is True for flag in loads), f"torch.load calls with weights_only={loads}"
    assert _tree(cwd) == set()

    # a booby-trapped optimizer state in the checkpoint: refused, never unpickled
    marker = tmp_path / "marker"
    shutil.rmtree(out / "checkpoint-2")
    torch.save({"trap": _Trap(marker)}, out / "checkpoint-1" / "optimizer.pt")
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|unsupported"):
        finetune(_tiny_model(), _tiny_data(), output_dir=out, resume=True, **BUDGET)
    assert not marker.exists(), "a pickle in a checkpoint was loaded"


def test_a_link_inside_the_output_folder_cannot_lead_writes_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("mine")
    out = tmp_path / "run"
    out.mkdir()
    (out / "best").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="points outside"):
        finetune(_tiny_model(), _tiny_data(), output_dir=out, resume=True, **BUDGET)
    assert _tree(outside) == {"precious.txt"} and (outside / "precious.txt").read_text() == "mine"
    # without resume, the non-empty folder is refused as it is
    with pytest.raises(FileExistsError):
        finetune(_tiny_model(), _tiny_data(), output_dir=out, **BUDGET)
    assert _tree(outside) == {"precious.txt"}
