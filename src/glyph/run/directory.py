"""The run directory: one class that knows its layout, reads it and writes it.

Layout of a complete run::

    RUN/
      tokenizer/                 HF tokenizer with the glyph tokens
      adapters/<trigger>/        standard peft: adapter_config.json + adapter_model.safetensors
      adapters/README.md         which glyphs trigger which adapter, how to load one
      manifest.json              written LAST: a run without it is not complete
      loss.jsonl                 one line per step (loss, lr, held-out loss at intervals)
      train_config.json          what defines the run (checked on --resume)
      checkpoints/               only while training (removed when the run completes)
      index/                     the FAISS scene index (``glyph index build``)
      eval/                      metrics.json, report.md and plots (``glyph eval``)

Training writes a run (:meth:`Run.prepare`, :meth:`Run.publish`); everything else only
reads it (:meth:`Run.manifest`, :meth:`Run.load_model`), and loading checks that the base
model is still the one the run was trained on.

Example::

    >>> run = Run("runs/default")                       # doctest: +SKIP
    >>> peft_model, tok = run.load_model()              # doctest: +SKIP
    >>> run.manifest().triggers                         # doctest: +SKIP
    {'body': 'adapters/body', 'initiation': 'adapters/initiation'}
"""
from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path

from ..display import held_warnings
from ..errors import GlyphError, ModelError, TrainingError
from ..files import atomic_write, publishing, read_json, read_text
from ..limits import MAX_JSON_BYTES
from ..readers import parse_json
from .card import adapter_card
from .manifest import Manifest

MANIFEST = "manifest.json"
TRAIN_CONFIG = "train_config.json"


class Run:
    """A run directory. Cheap to create; reads lazily."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._aside: Path | None = None   # a run --overwrite set aside until setup succeeds
        self._created = False             # prepare() made the directory

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------ layout
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def train_config_path(self) -> Path:
        return self.path / TRAIN_CONFIG

    @property
    def loss_path(self) -> Path:
        return self.path / "loss.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def index_dir(self) -> Path:
        return self.path / "index"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def tokenizer_dir(self) -> Path:
        """The run's tokenizer (as named by the manifest once the run is complete)."""
        if self.manifest_path.exists():
            return self.path / self.manifest().tokenizer
        return self.path / "tokenizer"

    def adapter_dir(self, trigger: str) -> Path:
        m = self.manifest()
        if trigger not in m.triggers:
            from ..errors import NotFound

            raise NotFound(f"run {self.path} has no trigger {trigger!r}; it has "
                           f"{', '.join(m.triggers)}")
        return self.path / m.triggers[trigger]

    # ------------------------------------------------------------ state
    def exists(self) -> bool:
        """A run was started here (complete or not)."""
        return self.train_config_path.exists() or self.manifest_path.exists()

    def is_complete(self) -> bool:
        return self.manifest_path.exists()

    def manifest(self) -> Manifest:
        """The validated manifest; a clear error for an incomplete or foreign directory."""
        if "_manifest" not in self.__dict__:
            if not self.manifest_path.exists():
                if self.exists():
                    raise ModelError(f"{self.path} is not a complete run (training did not "
                                     f"finish); finish it with `glyph train --out {self.path} "
                                     "--resume`")
                raise ModelError(f"{self.path} is not a glyph run directory (no {MANIFEST}); "
                                 "train one with `glyph train --out DIR`")
            self.__dict__["_manifest"] = Manifest.read(self.manifest_path)
        return self.__dict__["_manifest"]

    def check_registry(self, reg) -> None:
        """Refuse a registry that gives any of the run's glyphs another id."""
        m = self.manifest()
        for g in m.glyphs:
            have = reg.find(g.symbol)
            if have is None or have.id != g.id:
                now = f"id {have.id}" if have else "not registered"
                raise ModelError(
                    f"run {self.path} was trained with {g.symbol} at id {g.id} but the registry "
                    f"has it {now}; use the registry the run was trained with "
                    f"(fingerprint {m.registry.get('fingerprint', '?')}) or retrain")

    def loss_log(self) -> list[dict]:
        if not self.loss_path.exists():
            return []
        text = read_text(self.loss_path, ModelError, limit=MAX_JSON_BYTES, what="a loss log")
        rows = [parse_json(x, str(self.loss_path), ModelError, allow_nan=True, first_line=n)
                for n, x in enumerate(text.split("\n"), 1) if x.strip()]
        if not all(isinstance(r, dict) for r in rows):
            raise ModelError(f"{self.loss_path}: each line must be a JSON object; the run "
                             "directory is damaged")
        return rows

    # ------------------------------------------------------------ loading models
    def base_dir(self) -> str:
        """Where the run's base is, checked to be the base the run was trained on."""
        from ..model.base import fingerprint_dir

        base = self.manifest().base
        where = Path(base.path)
        if where.is_absolute() and not where.exists():
            raise ModelError(f"the base model of run {self.path} is gone ({base.path}); restore "
                             f"that directory or retrain with `glyph train --out {self.path} "
                             "--overwrite`")
        try:
            now = fingerprint_dir(where)
        except (OSError, ValueError, RecursionError) as e:  # unreadable, or not JSON
            raise ModelError(f"the base model of run {self.path} at {base.path} cannot be "
                             f"read ({type(e).__name__}); restore that base or retrain") from None
        if now != base.fingerprint:  # a local directory, or the hub id it was trained from
            raise ModelError(f"the base model at {base.path} is not the one run {self.path} "
                             f"was trained on (fingerprint {now}, the run expects "
                             f"{base.fingerprint}); restore that base or retrain")
        return base.path

    def load_base(self, *, dtype=None):
        """The run's base model (grown to the run's rows), without adapters, eval mode."""
        from ..model.base import load_pretrained

        return load_pretrained(self.base_dir(), rows=self.manifest().base.rows, dtype=dtype,
                               name=self.manifest().base.name)

    def load_model(self, *, dtype=None, triggers: list[str] | None = None,
                   trainable: bool = False):
        """The base with every trigger's adapter loaded (peft ``PeftModel``), eval mode."""
        m = self.manifest()
        names = triggers or list(m.triggers)
        with held_warnings():
            return self._load_adapters(self.load_base(dtype=dtype), names, trainable)

    def _load_adapters(self, base, names: list[str], trainable: bool):
        from peft import PeftModel

        from ..model.base import quiet_loading

        pm = None
        with quiet_loading():
            for t in names:
                where = self.adapter_dir(t)
                if not (where / "adapter_config.json").is_file():
                    raise ModelError(f"run {self.path}: adapter {t!r} is missing ({where}); "
                                     "the run directory is damaged: retrain it")
                try:
                    if pm is None:
                        pm = PeftModel.from_pretrained(base, where, adapter_name=t,
                                                       is_trainable=trainable)
                    else:
                        pm.load_adapter(where, adapter_name=t, is_trainable=trainable)
                except GlyphError:
                    raise
                except Exception as e:  # noqa: BLE001 - a damaged or foreign adapter file
                    raise ModelError(f"run {self.path}: adapter {t!r} in {where} cannot be "
                                     f"loaded ({_first_line(e)}); the run directory is "
                                     "damaged: retrain it") from None
        return pm.eval()

    def hf_tokenizer(self):
        """The run's tokenizer as a transformers tokenizer (left padding, for generation)."""
        from transformers import AutoTokenizer

        where = self.tokenizer_dir
        if not (where / "tokenizer.json").is_file():
            raise ModelError(f"run {self.path}: no tokenizer at {where}; the run directory is "
                             "damaged: retrain it")
        try:
            tok = AutoTokenizer.from_pretrained(where)
        except Exception as e:  # noqa: BLE001 - a damaged tokenizer directory
            raise ModelError(f"run {self.path}: the tokenizer at {where} cannot be loaded "
                             f"({_first_line(e)}); retrain the run") from None
        tok.padding_side = "left"
        return tok

    @cached_property
    def tokenizer(self):
        """The run's tokenizer as a ``tokenizers.Tokenizer`` (fast, no transformers)."""
        from ..vocab import sources

        return sources.load(self.tokenizer_dir)

    # ------------------------------------------------------------ writing (training)
    def prepare(self, config: dict, *, resume: bool, overwrite: bool) -> dict | None:
        """Check/prepare the directory; on resume return the saved config. Refuse to clobber."""
        out = self.path
        if resume and overwrite:
            raise TrainingError("pass --resume or --overwrite, not both")
        if resume:
            if not self.train_config_path.exists():
                raise TrainingError(f"{out} holds no run to resume; drop --resume to start one")
            if self.is_complete():
                raise TrainingError(f"{out} is a complete run; nothing to resume (use "
                                    "--overwrite to train it again)")
            return read_json(self.train_config_path, TrainingError, limit=MAX_JSON_BYTES,
                             what="a training config", fix="start over with --overwrite")
        if out.exists() and any(out.iterdir()):
            if not self.exists():
                raise TrainingError(f"{out} is not empty and is not a glyph run; choose another "
                                    "--out")
            if not overwrite:
                raise TrainingError(f"{out} holds another run; pass --resume to continue it or "
                                    "--overwrite to replace it")
            # set aside, not deleted: a setup that fails (a bad base, no memory) puts it back
            self._aside = out.with_name(f".{out.name}.replaced")
            shutil.rmtree(self._aside, ignore_errors=True)
            out.rename(self._aside)
        self._created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        return None

    def abandon(self) -> None:
        """Undo :meth:`prepare` after a failed setup: remove what it made, restore a replaced run."""
        if self._created or self._aside is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._aside is not None and self._aside.exists():
            self._aside.rename(self.path)
        self._aside, self._created = None, False

    def settle(self) -> None:
        """Setup succeeded: the replaced run (if any) is gone for good."""
        if self._aside is not None:
            shutil.rmtree(self._aside, ignore_errors=True)
        self._aside, self._created = None, False

    def write_train_config(self, config: dict) -> None:
        atomic_write(self.train_config_path, json.dumps(config, indent=2))

    def publish(self, manifest: Manifest, *, peft_model, loss_log: list[dict]) -> Path:
        """Save adapters, loss log and (last, atomically) the manifest; drop checkpoints."""
        with publishing(self.path / "adapters") as tmp:
            for t in manifest.triggers:
                # peft writes a non-"default" adapter into <dir>/<name>/
                peft_model.save_pretrained(str(tmp / t if t == "default" else tmp),
                                           selected_adapters=[t], save_embedding_layers=False)
            # peft writes a model card full of "[More Information Needed]": say what is here
            (tmp / "README.md").write_text(adapter_card(manifest), encoding="utf-8")
        atomic_write(self.loss_path, "".join(json.dumps(r) + "\n" for r in loss_log))
        atomic_write(self.manifest_path, manifest.write_text())
        self.__dict__.pop("_manifest", None)
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        return self.manifest_path


def _first_line(e: BaseException) -> str:
    from ..display import shown

    if "Weights only load failed" in str(e):  # torch.load(weights_only=True) refused a pickle
        return "a pickle that torch's weights-only loader refuses: it could run code"
    return shown((str(e).splitlines() or [type(e).__name__])[0], 160)[1:-1]

