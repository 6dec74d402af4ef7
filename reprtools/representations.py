"""Pooled hidden states of the base model and each checkpoint, captured once and kept on disk.

``representations/NAME/LANG.safetensors`` holds one float32 tensor per layer, ``layer.I`` of shape
``(sentences, hidden)``, rows in data order (layer 0 = embedding output, layer i = output of block i).  Its
metadata holds a key built from the model and adapter fingerprints, the sentences, the pooling, the maximum
length and the dtype, so a rerun reuses it without loading the model.

:func:`collect` reads the base weights from disk once: the base model is captured as it is, then each checkpoint
is wrapped on that same base in turn and unwrapped again.  One ``PeftModel`` holds one tuner type, so moving
between LoRA-family, VeRA and AdaLoRA checkpoints takes ``unload()`` (which removes the adapter layers without
merging them, restoring the base modules bit for bit) and a fresh wrap, not ``load_adapter``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from reprtools.checkpoints import Checkpoint, adapter_on
from reprtools.fileio import atomic_path


@dataclass(frozen=True)
class CaptureSettings:
    """How sentences become vectors; every field is part of the cache key."""

    pool: str = "mean"
    batch_size: int = 16
    max_length: int = 256
    dtype: str = "float32"


def cache_key(model_fp: str, adapter_fp: str | None, sentences: list[str], settings: CaptureSettings) -> str:
    from reprtools.capture import POOLING_VERSION

    payload = json.dumps({"model": model_fp, "adapter": adapter_fp, "sentences": sentences, "pool": settings.pool,
                          "pool_version": POOLING_VERSION, "max_length": settings.max_length,
                          "dtype": settings.dtype}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def save_representations(path: Path, layers, key: str) -> None:
    """Write ``(L, n, d)`` pooled vectors as ``layer.I`` tensors (float32), atomically."""
    import torch
    from safetensors.torch import save_file

    tensors = {f"layer.{i}": torch.as_tensor(layers[i], dtype=torch.float32).contiguous() for i in range(len(layers))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"reprtools_key": key, "layers": str(len(layers))})


def load_representations(path: str | os.PathLike) -> np.ndarray:
    """Read ``LANG.safetensors`` back as a float32 ``(L, n, d)`` numpy array (layer 0 = embeddings)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    return np.stack([tensors[f"layer.{i}"] for i in range(len(tensors))])


def is_cached(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            return (f.metadata() or {}).get("reprtools_key") == key
    except Exception:  # noqa: BLE001 - an unreadable file is simply captured again
        return False


class _BaseModel:
    """The base model, read from disk on first use only (a probe whose representations are all cached never
    loads it)."""

    def __init__(self, load: Callable[[], object]):
        self._load = load
        self.model = None
        self.loads = 0

    def plain(self):
        if self.model is None:
            self.model = self._load()
            self.loads += 1
        return self.model


def collect(rep_dir: Path, checkpoints: list[Checkpoint], sentences: dict[str, list[str]], model_fp: str,
            load_model: Callable[[], object], load_tokenizer: Callable[[], object], settings: CaptureSettings,
            device, progress: bool = True) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """``reps[name][lang]`` of shape ``(L, n, d)`` for ``base`` and every checkpoint, captured where the cache
    misses; returns it with the number of times the base weights were read from disk (0 or 1)."""
    from reprtools.capture import capture

    base = _BaseModel(load_model)
    tokenizer = None
    reps: dict[str, dict[str, np.ndarray]] = {}
    for ck in [None, *checkpoints]:
        name = "base" if ck is None else ck.name
        adapter_fp = None if ck is None else ck.fingerprint()
        keys = {lang: cache_key(model_fp, adapter_fp, sents, settings) for lang, sents in sentences.items()}
        paths = {lang: rep_dir / name / f"{lang}.safetensors" for lang in sentences}
        todo = [lang for lang in sentences if not is_cached(paths[lang], keys[lang])]
        if todo:
            tokenizer = tokenizer or load_tokenizer()
            with adapter_on(base.plain(), ck) as model:
                for lang in todo:
                    if progress:
                        print(f"reprtools: capturing {name} / {lang} ({len(sentences[lang])} sentences)",
                              file=sys.stderr, flush=True)
                    layers = capture(model, tokenizer, sentences[lang], pool=settings.pool,
                                     batch_size=settings.batch_size, max_length=settings.max_length, device=device,
                                     progress=progress)
                    save_representations(paths[lang], layers, keys[lang])
        reps[name] = {lang: load_representations(paths[lang]) for lang in sentences}
    return reps, base.loads
