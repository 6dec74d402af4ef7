"""Loading a dataset from the Hugging Face hub with the optional ``datasets`` package, failing in one line.

Used by the ``hf:`` sources (:func:`reprtools.data.tydiqa.load_hf_tydiqa`, :func:`reprtools.data.xnli.load_hf_xnli`).
Every way the hub can be out of reach becomes a :class:`ReprtoolsError` that says so and names the local
alternative (``local``, e.g. "download XNLI and use xnli:DIR").
"""

from __future__ import annotations

import os

from reprtools.errors import ReprtoolsError

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
# Exception names that mean the hub could not be reached (requests, urllib3, huggingface_hub, datasets).
_UNREACHABLE = ("Connection", "Timeout", "Offline", "LocalEntryNotFound", "MaxRetry", "NameResolution")


def offline_var() -> str | None:
    """The environment variable that switches the hub off (``HF_HUB_OFFLINE=1``), or ``None``."""
    for var in _OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def check_hub(spec: str, local: str) -> None:
    """Raise :class:`ReprtoolsError` if the hub is switched off or ``datasets`` is not installed."""
    var = offline_var()
    if var is not None:
        raise ReprtoolsError(f"{spec} needs the Hugging Face hub, which is unreachable ({var} is set); {local}")
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise ReprtoolsError(
            f"{spec} needs the optional 'datasets' package: pip install -e '.[hub]' (or pip install "
            f"'reprtools[hub]'); or {local}"
        ) from None


def hub_load(spec: str, local: str, name: str, config: str, split: str):
    """``datasets.load_dataset(name, config, split=split)``; every failure a one-line :class:`ReprtoolsError`."""
    check_hub(spec, local)
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the hub fails in many ways (no network, renamed dataset, ...)
        kind = type(exc).__name__
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        if any(word in kind for word in _UNREACHABLE) or isinstance(exc, (ConnectionError, TimeoutError)):
            raise ReprtoolsError(
                f"{spec} needs the Hugging Face hub, which is unreachable ({kind}: {first}); {local}"
            ) from None
        raise ReprtoolsError(
            f"could not load {name} ({config}, {split}) from the Hugging Face hub ({kind}: {first}); {local}"
        ) from None
