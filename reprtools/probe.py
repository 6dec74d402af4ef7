"""``reprtools probe``: capture every layer of the base model and each checkpoint on the same parallel sentences,
compare them, and write the results.

Three named steps (each a function a notebook can call on its own):

1. :func:`reprtools.representations.collect` -- pooled hidden states per model and language, the base weights read
   from disk once and each checkpoint wrapped on them in turn (``representations/NAME/LANG.safetensors``);
2. :func:`reprtools.compare.compute_metrics` -- every comparison as rows of the one results schema
   (:mod:`reprtools.results`), with valid intervals (:mod:`reprtools.measures.resampling`), baselines and, where
   runs differ only in seed, the seed noise floor;
3. :func:`write_outputs` -- ``metrics.csv``, ``layer_cka.npz`` (layer x layer CKA of each checkpoint against the
   base, linear and debiased), ``summary.json``, and the figures and tables drawn from the frame in memory.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reprtools.errors import ReprtoolsError
from reprtools.fileio import atomic_path, write_json

MIN_SENTENCES = 5  # debiased CKA needs 4; the 5-fold language-ID probe needs 5 per language
DTYPES = ("auto", "float32", "bfloat16", "float16")
JACKKNIFE_GROUPS = 20  # sentence groups of the delete-a-group jackknife (cost: this many evaluations per number)


@dataclass
class ProbeOptions:
    """Everything ``reprtools probe`` takes."""

    checkpoints: list[str]
    langs: str | list[str] = "en,hi,bn"
    data: str = "demo"
    max_sentences: int | None = None
    pool: str = "mean"
    output_dir: str | None = None
    device: str = "auto"
    batch_size: int = 16
    dtype: str = "auto"
    max_length: int = 256
    bootstrap: int = 0
    seed: int = 0
    figures: bool = True
    progress: bool = True


@dataclass
class ProbeResult:
    """What a probe wrote: ``metrics`` is the results frame (NaN where there is no interval)."""

    output_dir: Path
    metrics_csv: Path
    metrics: "object"  # pandas.DataFrame
    summary: dict
    figures: list[Path]


def _torch_dtype(name: str, device):
    import torch

    if name not in DTYPES:
        raise ReprtoolsError(f"unknown --dtype '{name}'; use one of {', '.join(DTYPES)}")
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bfloat16"
        return torch.float32, "float32"
    return getattr(torch, name), name


def _check_options(opts: ProbeOptions) -> None:
    from reprtools.capture import POOLS

    if opts.pool not in POOLS:
        raise ReprtoolsError(f"unknown --pool '{opts.pool}'; use one of {', '.join(POOLS)}")
    for name in ("batch_size", "max_length"):
        if getattr(opts, name) <= 0:
            raise ReprtoolsError(f"--{name.replace('_', '-')} must be positive, got {getattr(opts, name)}")
    if opts.bootstrap < 0:
        raise ReprtoolsError(f"--bootstrap must be >= 0, got {opts.bootstrap}")
    if opts.max_sentences is not None and opts.max_sentences < MIN_SENTENCES:
        raise ReprtoolsError(f"--max-sentences must be at least {MIN_SENTENCES} (the measures need that many), "
                             f"got {opts.max_sentences}")


def probe(opts: ProbeOptions) -> ProbeResult:
    """Collect representations, compute metrics, write outputs (see the module docstring)."""
    from reprtools.capture import resolve_device
    from reprtools.checkpoints import output_dir, read_checkpoints, seed_groups
    from reprtools.data import load_parallel
    from reprtools.languages import parse_langs
    from reprtools.models import fingerprint, load_tokenizer, resolve_model
    from reprtools.representations import CaptureSettings, collect

    started = time.time()
    checkpoints = read_checkpoints(opts.checkpoints)
    langs = parse_langs(opts.langs)
    _check_options(opts)
    sentences = load_parallel(opts.data, langs, opts.max_sentences)
    n = len(next(iter(sentences.values())))
    if n < MIN_SENTENCES:
        raise ReprtoolsError(f"{opts.data} gives {n} sentences per language; the measures need at least {MIN_SENTENCES}")
    device = resolve_device(opts.device)
    dtype, dtype_name = _torch_dtype(opts.dtype, device)
    out = output_dir(opts.output_dir, checkpoints[0], "probe")

    resolved = resolve_model(checkpoints[0].base)
    source = str(resolved.path) if resolved.path is not None else resolved.reload_id
    model_fp = fingerprint(resolved)

    def load_base():
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device)

    settings = CaptureSettings(opts.pool, opts.batch_size, opts.max_length, dtype_name)
    reps, loads = collect(out / "representations", checkpoints, sentences, model_fp, load_base,
                          lambda: load_tokenizer(source), settings, device, opts.progress)
    if opts.progress:
        print("reprtools: computing measures", file=sys.stderr, flush=True)
    metrics = measure(reps, checkpoints, langs, opts.bootstrap, opts.seed)
    context = {
        "base_model": {"name_or_path": checkpoints[0].base, "fingerprint_sha256": model_fp},
        "checkpoints": [{"name": ck.name, "method": ck.method, "seed": ck.seed, "path": str(ck.path)}
                        for ck in checkpoints],
        "seed_groups": {m: [ck.name for ck in members] for m, members in seed_groups(checkpoints).items()},
        "langs": langs, "data": {"spec": opts.data, "sentences_per_lang": n, "sha256": _sentences_sha(sentences)},
        "pool": opts.pool, "dtype": dtype_name, "device": str(device), "base_weight_loads": loads,
        "options": asdict(opts),
    }
    return write_outputs(out, reps, langs, metrics, context, figures=opts.figures, started=started)


def _sentences_sha(sentences) -> str:
    from reprtools.data import parallel_sha256

    return parallel_sha256(sentences)


def measure(reps: dict[str, dict[str, np.ndarray]], checkpoints, langs: list[str], bootstrap: int = 0,
            seed: int = 0):
    """The results frame of :func:`reprtools.compare.compute_metrics` on representations alone."""
    from reprtools import results
    from reprtools.compare import compute_metrics
    from reprtools.measures.resampling import Resampler

    n = next(iter(reps["base"].values())).shape[1]
    groups = min(JACKKNIFE_GROUPS, n)
    resampler = Resampler(n, n_boot=bootstrap, groups=groups, seed=seed) if bootstrap > 0 else None
    floors = Resampler(n, n_boot=0, groups=groups, seed=seed)
    runs = {"base": None, **{ck.name: ck for ck in checkpoints}}
    return results.frame(compute_metrics(reps, runs, langs, resampler, floors))


def layer_cka_matrices(reps: dict[str, dict[str, np.ndarray]], langs: list[str]) -> dict[str, np.ndarray]:
    """Layer x layer CKA of each checkpoint (rows) against the base (columns), and of the base against itself,
    all languages' sentences together: keys ``ESTIMATOR:base`` and ``ESTIMATOR:NAME_vs_base`` for the linear
    and the debiased linear estimator."""
    from reprtools.measures import cka_linear_matrix

    def stack(name):
        return np.concatenate([reps[name][lang] for lang in langs], axis=1)  # (L, n_langs * n, d)

    base = stack("base")
    out = {}
    for estimator, debiased in (("cka_linear", False), ("cka_linear_debiased", True)):
        out[f"{estimator}:base"] = cka_linear_matrix(base, debiased=debiased)
        for name in reps:
            if name != "base":
                out[f"{estimator}:{name}_vs_base"] = cka_linear_matrix(stack(name), base, debiased=debiased)
    return out


def _save_npz(path: Path, matrices: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in matrices.items()})


def write_outputs(out: Path, reps, langs, metrics, context: dict, *, figures: bool = True,
                  started: float | None = None) -> ProbeResult:
    """``metrics.csv`` once, ``layer_cka.npz``, the figures and tables from the frame in memory, and
    ``summary.json`` last."""
    from reprtools import results
    from reprtools.compare import HEADLINE_CKA

    metrics_csv = results.write_results(metrics, out / "metrics.csv")
    matrices = layer_cka_matrices(reps, langs)
    _save_npz(out / "layer_cka.npz", matrices)
    written: list[Path] = []
    if figures:
        from reprtools.report import draw_all, write_tables

        written = draw_all(metrics, out / "figures", layer_cka=_split_matrices(matrices))
        written += write_tables(metrics, out / "tables")
    shift = metrics[(metrics["comparison"] == results.SHIFT) & (metrics["metric"] == HEADLINE_CKA)]
    summary = {
        **context,
        "layers": int(next(iter(reps["base"].values())).shape[0]),
        "cka_estimator": HEADLINE_CKA,
        "mean_cka_to_base": {k: float(v) for k, v in shift.groupby("checkpoint")["value"].mean().items()},
        "intervals": {"bootstrap_resamples": context.get("options", {}).get("bootstrap", 0),
                      "jackknife_groups": min(JACKKNIFE_GROUPS, context.get("data", {}).get("sentences_per_lang", 0))},
        "files": {"metrics": "metrics.csv", "layer_cka": "layer_cka.npz", "representations": "representations/",
                  "figures": [str(p.relative_to(out)) for p in written]},
        "wall_time_s": time.time() - started if started else None,
    }
    write_json(out / "summary.json", summary)
    return ProbeResult(out, metrics_csv, metrics, summary, written)


def _split_matrices(matrices: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, m in matrices.items():
        estimator, _, name = key.partition(":")
        out.setdefault(estimator, {})[name] = m
    return out


def draw(probe_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, width: str = "two",
         formats=("pdf", "png", "svg")) -> list[Path]:
    """Redraw the figures and tables from ``metrics.csv`` (and ``layer_cka.npz`` beside it) alone."""
    from reprtools.report import draw

    return draw(probe_dir, out_dir, width=width, formats=tuple(formats))


def probe_checkpoints(checkpoints, **options):
    """The notebook form of ``reprtools probe``: the results frame for ``checkpoints`` (paths), with the
    options of :class:`ProbeOptions` as keywords (no progress output unless ``progress=True``)."""
    options.setdefault("progress", False)
    return probe(ProbeOptions(checkpoints=[str(c) for c in checkpoints], **options)).metrics
