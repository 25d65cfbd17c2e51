"""The recipe under ``accelerate launch`` with two CPU processes (gloo), against one process.

Two processes that split each batch must train the same model as one process that sees the
whole batch: the loss is weighted by label tokens across processes, so the gradient is the
same sum. Only the main process may write (the launcher script makes every write from
another process fail), and a two-process run resumes from its checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from glyph.training.recipe import train  # noqa: E402

from .conftest import train_config  # noqa: E402

LAUNCHER = Path(__file__).parent / "support" / "ddp_train.py"
ARGS = dict(steps=12, batch_size=4, lr=5e-2, embedding_lr=5e-1, save_every=4, eval_every=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, base: Path, *extra: str, env: dict | None = None):
    """``accelerate launch`` two processes of ``glyph train`` (torchrun underneath; on a
    machine without CUDA the recipe's Accelerator runs them on the CPU with gloo)."""
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(_free_port()), str(LAUNCHER), "train", "--out", str(out), "--base", str(base),
           "--steps", "12", "--batch-size", "4", "--lr", "5e-2", "--embedding-lr", "5e-1",
           "--lora-r", "4", "--max-len", "64", "--save-every", "4", "--eval-every", "4",
           "--adapters", "trigger", *extra]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=600)


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "loss.jsonl").read_text().splitlines()]


def _adapters(run: Path) -> dict:
    from safetensors.torch import load_file

    return {f"{d.name}/{k}": v for d in sorted((run / "adapters").iterdir()) if d.is_dir()
            for k, v in load_file(str(d / "adapter_model.safetensors")).items()}


def test_two_processes_train_like_one_write_once_and_resume(mini_project, tiny_base):
    one = train(train_config(mini_project / "one", tiny_base, **ARGS), log=lambda m: None,
                progress=False)
    two = mini_project / "two"
    r = _launch(two, tiny_base)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["metrics"]["processes"] == 2 and one.metrics["processes"] == 1
    # the same loss curve (every step trains one trigger; both triggers take turns) …
    assert _losses(two) == pytest.approx(_losses(one.out), abs=1e-4)
    # … and the same adapters for every trigger, to float rounding
    a, b = _adapters(one.out), _adapters(two)
    assert a.keys() == b.keys() and len({k.split("/")[0] for k in a}) == 2
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.out.iterdir())

    # kill both processes after step 10 (last checkpoint: step 8), then resume with two
    crashed = mini_project / "crashed"
    r = _launch(crashed, tiny_base, env={"GLYPH_TEST_CRASH_AFTER": "10"})
    assert r.returncode != 0 and not (crashed / "manifest.json").exists()
    assert (crashed / "checkpoints" / "latest").read_text().strip() == "step-000008"
    r = _launch(crashed, tiny_base, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    c = _adapters(crashed)
    assert max((b[k] - c[k]).abs().max().item() for k in b) < 1e-6
    assert _losses(crashed) == pytest.approx(_losses(two), abs=1e-5)
    shutil.rmtree(crashed)
