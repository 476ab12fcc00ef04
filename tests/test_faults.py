"""Faults: a fine-tune killed with SIGKILL resumes to the same result; a full or read-only disk is
refused before training starts.

The kill test runs the real command line, ``python -m lightft finetune``, in a subprocess, and kills it
with SIGKILL (no exception handler, no cleanup: what the out-of-memory killer or a closed laptop lid
does) as soon as its first checkpoint is complete. ``--resume`` must then finish with the same test
metrics, validation metrics and number of steps as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import datasets
import pytest
from transformers import TrainerCallback

import lightft

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# 96 examples, batch 8: 12 steps an epoch, a checkpoint every 6 steps, 24 steps in all, on the tiny BERT of
# conftest.tiny_model_dir (the real MiniLM would make this the slowest test of the suite for no extra coverage).
RUN = ["--train-limit", "96", "--eval-limit", "32", "--epochs", "2", "--max-length", "32", "--batch-size", "8",
       "--precision", "fp32", "--seed", "0", "--checkpoint-every", "6", "--quiet"]
STEPS = 24


def _finetune_cli(output: Path, model_dir: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightft", "finetune", "--output", str(output),
                           "--model", str(model_dir), "--data", str(data), *RUN, *extra],
                          capture_output=True, text=True, env=ENV, timeout=900)


def _finetune_here(capsys, output: Path, model_dir: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    """The same command line, through ``lightft.__main__.main`` in this process (no interpreter start-up)."""
    from lightft.__main__ import main

    capsys.readouterr()
    code = main(["finetune", "--output", str(output), "--model", str(model_dir), "--data", str(data), *RUN, *extra])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([], code, out, err)


def _summary(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _complete_checkpoints(output: Path) -> list[Path]:
    return [c for c in output.glob("checkpoint-*") if (c / "trainer_state.json").is_file()]


def test_sigkill_after_first_checkpoint_then_resume_gives_the_uninterrupted_result(tmp_path, capsys, tiny_model_dir,
                                                                                  toy_csv):
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "lightft", "finetune", "--output", str(killed),
                             "--model", str(tiny_model_dir), "--data", str(toy_csv), *RUN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 600
        while not (killed.is_dir() and _complete_checkpoints(killed)):
            assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed (exit {proc.returncode}): too fast to test"
    assert not (killed / "result.json").exists(), "the run finished before the kill: nothing was tested"
    first = min(int(c.name.split("-")[1]) for c in _complete_checkpoints(killed))
    assert first < STEPS, "killed after the last step: nothing to resume"

    resumed = _summary(_finetune_cli(killed, tiny_model_dir, toy_csv, "--resume"))
    # the reference run: same command line and seed, uninterrupted (in this process: same code, no start-up)
    uninterrupted = _summary(_finetune_here(capsys, tmp_path / "whole", tiny_model_dir, toy_csv))
    assert resumed["steps"] == uninterrupted["steps"] == STEPS
    assert resumed["test"] == uninterrupted["test"]
    a = json.loads((killed / "result.json").read_text())
    b = json.loads((tmp_path / "whole" / "result.json").read_text())
    assert a["validation_metrics"]["accuracy"] == b["validation_metrics"]["accuracy"]
    assert a["validation_metrics"]["loss"] == pytest.approx(b["validation_metrics"]["loss"], rel=1e-6)
    assert a["best_epoch"] == b["best_epoch"]
    # the resumed run trained on from the checkpoint, not from scratch: its log starts after it
    logged = [h["step"] for h in a["history"] if "loss" in h and "eval_loss" not in h]
    assert logged and min(logged) > 0
    assert not (killed / ".best-partial").exists() and not (killed / ".best-old").exists()


def test_resume_skips_a_checkpoint_left_half_written(tmp_path):
    """A kill in the middle of a save leaves checkpoint-N without trainer_state.json: resume must use
    the last complete checkpoint instead of crashing on the incomplete one."""
    out = tmp_path / "run"
    data = _tiny_data()
    budget = dict(max_length=16, batch_size=8, epochs=1, quiet=True, precision="fp32", checkpoint_every=1)
    model = _tiny_model()
    lightft.finetune(model, data, output_dir=out, **budget)
    steps = sorted(int(c.name.split("-")[1]) for c in out.glob("checkpoint-*"))
    last = out / f"checkpoint-{steps[-1]}"
    (last / "trainer_state.json").unlink()  # as if killed before the save finished
    (last / "model.safetensors").write_bytes(b"\x00" * 10)
    result = lightft.finetune(_tiny_model(), data, output_dir=out, resume=True, **budget)
    assert result.steps == steps[-1]


class _Began(TrainerCallback):
    def __init__(self):
        self.began = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = True


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


@contextmanager
def _mounted_tmpfs(path: Path, options: str):
    """A real small or read-only file system (root), so that the disk itself refuses the writes."""
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {path} as root ({done.stderr.strip()}); this test needs it")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextmanager
def _unwritable_folder(path: Path):
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only file system
        with _mounted_tmpfs(path, "size=8g,ro") as mounted:  # room enough: the write fails
            yield mounted
    else:
        path.mkdir(parents=True)
        path.chmod(0o500)
        try:
            yield path
        finally:
            path.chmod(0o700)


@contextmanager
def _full_disk(path: Path, monkeypatch):
    if os.geteuid() == 0:  # a real 1 MiB file system: the first checkpoint does not fit
        with _mounted_tmpfs(path, "size=1m") as mounted:
            yield mounted
    else:  # no mount without root: the first save fails the way a full disk makes it fail
        from transformers import Trainer

        def full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        path.mkdir(parents=True)
        monkeypatch.setattr(Trainer, "_save_checkpoint", full)
        yield path


def test_unwritable_output_folder_fails_before_training(tmp_path):
    began = _Began()
    with _unwritable_folder(tmp_path / "ro") as ro:
        with pytest.raises(PermissionError, match="not writable"):
            lightft.finetune(_tiny_model(), _tiny_data(), output_dir=ro / "run", max_length=16, quiet=True,
                             precision="fp32", callbacks=[began])
        assert list(ro.iterdir()) == []
    assert not began.began, "training started before the output folder was checked"


def test_unwritable_output_folder_cli_one_line_exit_2(tmp_path, capsys, tiny_model_dir, toy_csv):
    with _unwritable_folder(tmp_path / "ro") as ro:
        done = _finetune_here(capsys, ro / "run", tiny_model_dir, toy_csv)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "not writable" in done.stderr and "Traceback" not in done.stderr
        assert list(ro.iterdir()) == []


def test_full_disk_fails_with_a_clear_error_that_names_the_folder(tmp_path, monkeypatch):
    # No prediction of the space a run will need: the disk itself says so at the first save, and the
    # error says where, what to do, and carries ENOSPC (errno 28) for a caller that wants to check.
    with _full_disk(tmp_path / "small", monkeypatch) as small:
        with pytest.raises(OSError, match="no space left on the disk holding output_dir .*small/run") as caught:
            lightft.finetune(_tiny_model(), _tiny_data(), output_dir=small / "run", max_length=16, quiet=True,
                             precision="fp32")
        assert caught.value.errno == 28
        assert "resume=True" in str(caught.value)
