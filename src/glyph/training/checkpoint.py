"""Checkpoints for resume: trainable parameters, AdamW moments and the step, as safetensors + JSON.

They live in ``RUN/checkpoints/step-N`` (the newest two are kept; ``latest`` names the newest)
and are removed when the run completes. No pickle anywhere.

Example::

    >>> save(run, 25, peft_model, opt, loss_log)          # doctest: +SKIP
    >>> step, loss_log = restore(run, peft_model, opt, sched)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import re

from ..errors import TrainingError
from ..files import atomic_write, publishing, read_json
from ..limits import MAX_JSON_BYTES

KEEP = 2


def trainable(peft_model) -> dict:
    """The parameters a run trains: LoRA matrices and glyph rows, by name."""
    return {n: p for n, p in peft_model.named_parameters()
            if "lora_" in n or "trainable_tokens_delta" in n}


def latest(run) -> str:
    """The newest checkpoint's name, or ``none``."""
    f = run.checkpoints / "latest"
    try:
        return f.read_text(encoding="utf-8", errors="replace")[:100].strip() if f.exists() \
            else "none"
    except OSError:
        return "none?"


def save(run, step: int, peft_model, opt, loss_log: list):
    """Atomically write ``checkpoints/step-N`` and point ``latest`` at it."""
    import torch
    from safetensors.torch import save_file

    root = run.checkpoints
    final = root / f"step-{step:06d}"
    params = trainable(peft_model)
    with publishing(final) as tmp:
        save_file({n: p.detach().contiguous().clone() for n, p in params.items()},
                  str(tmp / "params.safetensors"))
        by_id = {id(p): n for n, p in params.items()}
        moments = {}
        for p, st in opt.state.items():
            name = by_id.get(id(p))
            if name is None:
                continue
            for k, v in st.items():
                t = v if torch.is_tensor(v) else torch.tensor(v)
                moments[f"{name}::{k}"] = t.detach().contiguous().clone()
        save_file(moments, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, "loss_log": loss_log}))
    atomic_write(root / "latest", final.name + "\n")
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    return final


def restore(run, peft_model, opt, sched) -> tuple[int, list]:
    """Restore the latest checkpoint; ``(0, [])`` if the run stopped before its first one."""
    import torch
    from safetensors.torch import load_file

    name = latest(run)
    if name == "none":
        return 0, []
    d = run.checkpoints / name
    damaged = "; the checkpoint is damaged: start again with --overwrite"
    if not re.fullmatch(r"step-\d{6,}", name) or not d.is_dir():
        raise TrainingError(f"{run.checkpoints / 'latest'} names no checkpoint ({name[:40]!r})"
                            + damaged)
    params = trainable(peft_model)
    try:
        saved = load_file(str(d / "params.safetensors"))
        moments = load_file(str(d / "optimizer.safetensors"))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own errors
        raise TrainingError(f"{d}: cannot read its weights ({type(e).__name__})" + damaged) \
            from None
    state = read_json(d / "state.json", TrainingError, limit=MAX_JSON_BYTES, what="a checkpoint",
                      fix="start again with --overwrite")
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) \
            or not isinstance(state.get("loss_log"), list):
        raise TrainingError(f"{d / 'state.json'}: not a glyph checkpoint state" + damaged)
    missing = set(params) ^ set(saved)
    if missing:
        raise TrainingError(f"checkpoint {d} does not match this model ({sorted(missing)[:3]} …); "
                            "start again with --overwrite")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n])
    moments.pop("__torch_rng__", None)  # written by glyph < 0.2; a step seeds its own draws
    for n, p in params.items():
        st = {k.split("::", 1)[1]: v for k, v in moments.items() if k.split("::", 1)[0] == n}
        if st:
            opt.state[p] = st
    step = state["step"]
    sched.last_epoch = step
    lrs = [base * lam(step) for base, lam in zip(sched.base_lrs, sched.lr_lambdas)]
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr
    sched._last_lr = lrs
    return step, state["loss_log"]
