"""Checkpoints to probe: a ``reprtools train`` run directory or any PEFT adapter directory, what its
``run.json`` says about how it was trained, and which checkpoints differ only in their seed.

A run's ``--seed`` draws its data sample, the order of that sample and the adapter's initialisation together, so
two runs of one method that differ only in seed show "what changes with the seed": the noise floor that any
difference between methods has to exceed.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from reprtools.adapters import method_from_peft_config
from reprtools.errors import ReprtoolsError

#: Options of ``reprtools train`` that do not change what is learned (where files go, logging, resuming), and the
#: batch options, which are compared through the effective global batch instead.
_BOOKKEEPING = frozenset({"output_dir", "resume", "overwrite", "progress", "logging_steps", "save_steps", "report_to",
                          "batch_size", "gradient_accumulation", "global_batch_size"})


def _train_defaults() -> dict:
    from dataclasses import MISSING, fields

    from reprtools.train import TrainOptions

    return {f.name: f.default for f in fields(TrainOptions) if f.default is not MISSING}


def _learned_settings(options: dict, training: dict) -> dict:
    """The options that change what a run learns, in a form that does not depend on the reprtools version that
    wrote them: an option absent from an older ``run.json``, ``None`` or equal to today's default counts as the
    default; batch options count through the effective global batch (per device x accumulation x processes)."""
    defaults = _train_defaults()
    same = {k: v for k, v in options.items()
            if k not in _BOOKKEEPING | {"seed"} and v is not None and not (k in defaults and v == defaults[k])}
    if training:
        same["global_batch"] = (training.get("per_device_batch_size", training.get("batch_size"))
                                * (training.get("gradient_accumulation") or 1) * (training.get("world_size") or 1))
    return same


@dataclass(frozen=True)
class Checkpoint:
    """A PEFT adapter to probe.  ``name`` labels it in every output; ``base`` is its base model's id or path;
    ``settings`` are the ``reprtools train`` options from its ``run.json`` (empty for a bare adapter)."""

    name: str
    path: Path
    adapter_dir: Path
    method: str
    base: str
    settings: dict = field(default_factory=dict, hash=False, compare=False)
    training: dict = field(default_factory=dict, hash=False, compare=False)
    data: dict = field(default_factory=dict, hash=False, compare=False)  # run.json's "data": what it trained on

    @property
    def seed(self) -> int | None:
        seed = self.settings.get("seed")
        return int(seed) if isinstance(seed, int) else None

    def seed_group(self) -> str | None:
        """A key shared by the runs that differ only in seed (every training option but the seed and
        bookkeeping equal); ``None`` without a ``run.json``."""
        if self.seed is None:
            return None
        same = _learned_settings(self.settings, self.training)
        return json.dumps({"method": self.method, "base": self.base, **same}, sort_keys=True, default=str)

    def run_columns(self) -> dict:
        """The run's own settings for the results table (:data:`reprtools.results.RUN_COLUMNS`)."""
        s = self.settings
        return {"model": s.get("model", ""), "target_lang": s.get("lang", ""), "ratio": s.get("ratio"),
                "seed": self.seed}

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for f in sorted(self.adapter_dir.iterdir()):
            if f.suffix in (".safetensors", ".bin", ".json"):
                digest.update(f.name.encode())
                digest.update(f.read_bytes())
        return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReprtoolsError(f"{path} is not valid JSON ({exc})") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A checkpoint from a ``reprtools train`` run directory or a PEFT adapter directory."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ReprtoolsError(f"checkpoint not found: {path}")
    if not p.is_dir():
        raise ReprtoolsError(f"checkpoint {path} is not a directory; give a reprtools run or a PEFT adapter directory")
    p = p.resolve()
    if (p / "adapter" / "adapter_config.json").is_file():
        adapter_dir, name, run_file = p / "adapter", p.name, p / "run.json"
    elif (p / "adapter_config.json").is_file():
        inside_run = p.name == "adapter"
        adapter_dir = p
        name = p.parent.name if inside_run else p.name
        run_file = (p.parent if inside_run else p) / "run.json"
    else:
        raise ReprtoolsError(
            f"{path} is not a reprtools run or a PEFT adapter directory (no adapter_config.json); "
            "give the directory `reprtools train -o` wrote, or its adapter/ folder"
        )
    config = _read_json(adapter_dir / "adapter_config.json")
    method, settings, training, data = method_from_peft_config(config), {}, {}, {}
    if run_file.is_file():
        run = _read_json(run_file)
        method = run.get("method", method)
        settings = dict(run.get("options") or {})
        settings.setdefault("seed", run.get("seed"))
        training = dict(run.get("training") or {})
        data = dict(run.get("data") or {})
    base = config.get("base_model_name_or_path")
    if not base:
        raise ReprtoolsError(f"{adapter_dir} does not name its base model (base_model_name_or_path is empty)")
    return Checkpoint(name, p, adapter_dir, method, str(base), settings, training, data)


def output_dir(given: str | os.PathLike | None, first: Checkpoint, default: str) -> Path:
    """Where a command writes: ``given``, else ``FIRST_CHECKPOINT/default``; an existing file there is an error."""
    out = (Path(given).expanduser() if given else first.path / default).resolve()
    if out.exists() and not out.is_dir():
        raise ReprtoolsError(f"--output-dir {out} exists and is not a directory")
    return out


def _same_base(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def read_checkpoints(paths) -> list[Checkpoint]:
    """Every checkpoint of ``paths``; they must share one base model and have distinct names."""
    if not paths:
        raise ReprtoolsError("give at least one checkpoint directory to probe")
    checkpoints = [read_checkpoint(p) for p in paths]
    first = checkpoints[0]
    for ck in checkpoints[1:]:
        if not _same_base(ck.base, first.base):
            raise ReprtoolsError(
                f"checkpoints have different base models: {first.name} uses {first.base}, {ck.name} uses {ck.base}; "
                "probe the checkpoints of one base model together"
            )
    names = [ck.name for ck in checkpoints]
    for name in names:
        if name == "base":
            raise ReprtoolsError("a checkpoint is named 'base', which labels the base model; rename its directory")
        if names.count(name) > 1:
            raise ReprtoolsError(f"two checkpoints are named '{name}'; their directories must have distinct names")
    return checkpoints


def seed_groups(checkpoints: list[Checkpoint]) -> dict[str, list[Checkpoint]]:
    """Method -> its runs that differ only in seed (the largest such group per method, at least two runs)."""
    groups: dict[str, list[Checkpoint]] = {}
    for ck in checkpoints:
        key = ck.seed_group()
        if key is not None:
            groups.setdefault(key, []).append(ck)
    by_method: dict[str, list[Checkpoint]] = {}
    for members in groups.values():
        if len(members) >= 2 and len(members) > len(by_method.get(members[0].method, [])):
            by_method[members[0].method] = members
    return by_method


def is_seed_pair(a: Checkpoint, b: Checkpoint) -> bool:
    return a.seed_group() is not None and a.seed_group() == b.seed_group() and a.seed != b.seed


def cross_seed_pairs(a: list[Checkpoint], b: list[Checkpoint]) -> list[tuple[Checkpoint, Checkpoint]]:
    """Pairs of one run of each method with different seeds: two methods run with the same seed share their data
    sample, order and initialisation, so their same-seed similarity understates how different they are."""
    return [(x, y) for x in a for y in b if x.seed != y.seed]


def seed_pairs(members: list[Checkpoint]) -> list[tuple[Checkpoint, Checkpoint]]:
    return list(combinations(members, 2))


@contextmanager
def adapter_on(model, checkpoint: Checkpoint | None):
    """``model`` itself (``checkpoint`` None) or ``model`` wrapped with the checkpoint's adapter, unwrapped again on
    exit.  ``unload()`` removes the adapter layers without merging them, so ``model`` is the base again, bit for
    bit; one ``PeftModel`` holds one tuner type, so moving between LoRA-family, VeRA and AdaLoRA checkpoints takes
    an unload and a fresh wrap, not ``load_adapter``.  The probe and eval both read the base weights once this way."""
    if checkpoint is None:
        yield model
        return
    from peft import PeftModel

    wrapped = PeftModel.from_pretrained(model, str(checkpoint.adapter_dir), is_trainable=False)
    try:
        yield wrapped
    finally:
        wrapped.unload()  # returns ``model``, the same object, with its original modules back
