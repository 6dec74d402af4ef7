"""``reprtools probe``: what is compared with what, and the files it leaves.

For the base model and every checkpoint (a ``reprtools train`` run directory or any PEFT adapter directory,
adapters unmerged) the probe captures pooled hidden states of every layer for the same parallel sentences in
each language (:mod:`reprtools.capture`), saves them, and computes per layer (:mod:`reprtools.measures`):

* **representation shift**: each checkpoint against the base, per language -- ``cka_linear``,
  ``cka_linear_debiased``, ``cka_rbf``, ``cosine_base`` (``reference = base``);
* **checkpoint vs checkpoint**: each pair, per language -- ``cka_linear`` (``reference`` = the other's name);
* **cross-lingual alignment** within each model, for each pair of languages -- ``cosine_parallel``,
  ``retrieval_top1``, ``cka_linear`` (``lang`` and ``lang_b`` filled, ``reference`` empty);
* **language-cluster separability** within each model, the base included, over all languages together --
  ``silhouette``, ``probe_accuracy``, ``davies_bouldin``, ``fisher_ratio`` (``lang`` = ``en+hi+bn``);
* **layer x layer linear CKA** of each checkpoint against the base (all languages' sentences together), in one
  batched pass per checkpoint: ``layer_cka.npz``.

Files in the output directory (default ``CHECKPOINT/probe``):

* ``representations/NAME/LANG.safetensors``: one float32 tensor per layer, named ``layer.I``, shape
  ``(sentences, hidden)``, rows in data order; ``NAME`` is ``base`` or the checkpoint's name.  The metadata
  holds a key built from the model and adapter fingerprints, the sentences' hash and the pooling, so a rerun
  reuses them without loading the model.
* ``metrics.csv``: ``checkpoint, method, reference, layer, lang, lang_b, metric, value, ci_low, ci_high``.
* ``summary.json``, ``layer_cka.npz``, ``figures/`` (PDF, PNG, SVG heatmaps) and ``tables/`` (booktabs LaTeX).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from reprtools.errors import ReprtoolsError
from reprtools.fileio import atomic_path, write_json

METRICS_COLUMNS = ("checkpoint", "method", "reference", "layer", "lang", "lang_b", "metric", "value", "ci_low", "ci_high")
SHIFT_MEASURES = ("cka_linear", "cka_linear_debiased", "cka_rbf", "cosine_base")
PAIR_MEASURES = ("cka_linear",)
CROSS_LINGUAL_MEASURES = ("cosine_parallel", "retrieval_top1", "cka_linear")
SEPARABILITY_MEASURES = ("silhouette", "probe_accuracy", "davies_bouldin", "fisher_ratio")
MIN_SENTENCES = 5  # debiased CKA needs 4; the 5-fold language-ID probe needs 5 per language
DTYPES = ("auto", "float32", "bfloat16", "float16")


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


@dataclass(frozen=True)
class Checkpoint:
    """A PEFT adapter to probe: ``name`` labels it in every output; ``base`` is its base model's id or path."""

    name: str
    path: Path
    adapter_dir: Path
    method: str
    base: str

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for f in sorted(self.adapter_dir.iterdir()):
            if f.suffix in (".safetensors", ".bin", ".json"):
                digest.update(f.name.encode())
                digest.update(f.read_bytes())
        return digest.hexdigest()


def _method_of(config: dict) -> str:
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type == "ADALORA":
        return "adalora"
    if peft_type == "VERA":
        return "vera"
    if peft_type == "LORA":
        if config.get("use_dora"):
            return "dora"
        init = config.get("init_lora_weights")
        return "pissa" if isinstance(init, str) and init.startswith("pissa") else "lora"
    return peft_type.lower() or "unknown"


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A checkpoint from a ``reprtools train`` run directory or a PEFT adapter directory."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ReprtoolsError(f"checkpoint not found: {path}")
    if not p.is_dir():
        raise ReprtoolsError(f"checkpoint {path} is not a directory; give a reprtools run or a PEFT adapter directory")
    p = p.resolve()
    run_file = p / "run.json"
    if (p / "adapter" / "adapter_config.json").is_file():
        adapter_dir, name = p / "adapter", p.name
    elif (p / "adapter_config.json").is_file():
        adapter_dir = p
        name = p.parent.name if p.name == "adapter" else p.name
        run_file = p.parent / "run.json" if p.name == "adapter" else run_file
    else:
        raise ReprtoolsError(
            f"{path} is not a reprtools run or a PEFT adapter directory (no adapter_config.json); "
            "give the directory `reprtools train -o` wrote, or its adapter/ folder"
        )
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
    except ValueError as exc:
        raise ReprtoolsError(f"{adapter_dir / 'adapter_config.json'} is not valid JSON ({exc})") from None
    method = _method_of(config)
    if run_file.is_file():
        try:
            method = json.loads(run_file.read_text()).get("method", method)
        except ValueError:
            pass
    base = config.get("base_model_name_or_path")
    if not base:
        raise ReprtoolsError(f"{adapter_dir} does not name its base model (base_model_name_or_path is empty)")
    return Checkpoint(name, p, adapter_dir, method, str(base))


def _same_base(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def read_checkpoints(paths) -> list[Checkpoint]:
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


# ------------------------------------------------------------------------------------------ representations
def _rep_key(model_fp: str, adapter_fp: str | None, sentences: list[str], opts: ProbeOptions, dtype: str) -> str:
    payload = json.dumps(
        {"model": model_fp, "adapter": adapter_fp, "sentences": sentences, "pool": opts.pool,
         "max_length": opts.max_length, "dtype": dtype},
        ensure_ascii=False,
    )
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
    count = len(tensors)
    return np.stack([tensors[f"layer.{i}"] for i in range(count)])


def _cached(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            return (f.metadata() or {}).get("reprtools_key") == key
    except Exception:  # noqa: BLE001 - an unreadable file is simply recomputed
        return False


# ---------------------------------------------------------------------------------------------- measuring
@dataclass
class _Rows:
    bootstrap: int
    seed: int
    rows: list[dict] = field(default_factory=list)

    def add(self, checkpoint, method, reference, layer, lang, lang_b, metric, fn, *arrays, labels=None):
        from reprtools.measures import bootstrap_ci

        if self.bootstrap > 0:
            value, low, high = bootstrap_ci(fn, *arrays, n_boot=self.bootstrap, seed=self.seed, labels=labels)
        else:
            value = fn(*arrays, labels) if labels is not None else fn(*arrays)
            low = high = None
        self.rows.append({
            "checkpoint": checkpoint, "method": method, "reference": reference, "layer": layer, "lang": lang,
            "lang_b": lang_b, "metric": metric, "value": float(value),
            "ci_low": "" if low is None else float(low), "ci_high": "" if high is None else float(high),
        })


def compute_metrics(reps: dict[str, dict[str, np.ndarray]], methods: dict[str, str], langs: list[str],
                    bootstrap: int = 0, seed: int = 0) -> list[dict]:
    """All metric rows from representations ``reps[name][lang]`` of shape ``(L, n, d)`` (``name`` "base" first).

    Pure: no model, no files.  ``methods`` maps each name to its method ("base" for the base).
    """
    from reprtools import measures

    out = _Rows(bootstrap, seed)
    names = list(reps)
    checkpoints = [n for n in names if n != "base"]
    num_layers = next(iter(reps["base"].values())).shape[0]
    for layer in range(num_layers):
        for name in checkpoints:
            for lang in langs:
                base, ck = reps["base"][lang][layer], reps[name][lang][layer]
                for metric in SHIFT_MEASURES:
                    out.add(name, methods[name], "base", layer, lang, "", metric, measures.PAIRED_MEASURES[metric], base, ck)
        for a, b in combinations(checkpoints, 2):
            for lang in langs:
                for metric in PAIR_MEASURES:
                    out.add(a, methods[a], b, layer, lang, "", metric, measures.PAIRED_MEASURES[metric],
                            reps[b][lang][layer], reps[a][lang][layer])
        for name in names:
            for la, lb in combinations(langs, 2):
                for metric in CROSS_LINGUAL_MEASURES:
                    out.add(name, methods[name], "", layer, la, lb, metric, measures.CROSS_LINGUAL[metric],
                            reps[name][la][layer], reps[name][lb][layer])
            if len(langs) >= 2:
                stacked = np.concatenate([reps[name][lang][layer] for lang in langs])
                labels = np.repeat(np.arange(len(langs)), [reps[name][lang].shape[1] for lang in langs])
                for metric in SEPARABILITY_MEASURES:
                    out.add(name, methods[name], "", layer, "+".join(langs), "", metric,
                            measures.SEPARABILITY[metric], stacked, labels=labels)
    return out.rows


def layer_cka_matrices(reps: dict[str, dict[str, np.ndarray]], langs: list[str]) -> dict[str, np.ndarray]:
    """Layer x layer linear CKA of each checkpoint (rows) against the base (columns), sentences of all
    languages together; and the base against itself."""
    from reprtools.measures import cka_linear_matrix

    def stack(name):
        return np.concatenate([reps[name][lang] for lang in langs], axis=1)  # (L, n_langs * n, d)

    base = stack("base")
    result = {"base": cka_linear_matrix(base)}
    for name in reps:
        if name != "base":
            result[f"{name}_vs_base"] = cka_linear_matrix(stack(name), base)
    return result


def write_metrics_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})


def _save_npz(path: Path, matrices: dict[str, np.ndarray]) -> None:
    arrays = {}
    for key, m in matrices.items():
        arrays[key] = m
        arrays[f"{key}_rows"] = np.arange(m.shape[0])
        arrays[f"{key}_cols"] = np.arange(m.shape[1])
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)


# ------------------------------------------------------------------------------------------------- probe
@dataclass
class ProbeResult:
    output_dir: Path
    metrics_csv: Path
    rows: list[dict]
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


def probe(opts: ProbeOptions) -> ProbeResult:
    """Capture, save, measure and draw, as the module docstring describes; returns what was written."""
    from reprtools.capture import POOLS, capture, resolve_device
    from reprtools.data import load_parallel, parallel_sha256
    from reprtools.languages import parse_langs
    from reprtools.models import fingerprint, load_tokenizer, resolve_model

    started = time.time()
    checkpoints = read_checkpoints(opts.checkpoints)
    langs = parse_langs(opts.langs)
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
    sentences = load_parallel(opts.data, langs, opts.max_sentences)
    n = len(next(iter(sentences.values())))
    if n < MIN_SENTENCES:
        raise ReprtoolsError(f"{opts.data} gives {n} sentences per language; the measures need at least {MIN_SENTENCES}")
    device = resolve_device(opts.device)
    dtype, dtype_name = _torch_dtype(opts.dtype, device)
    out = Path(opts.output_dir).expanduser() if opts.output_dir else checkpoints[0].path / "probe"
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ReprtoolsError(f"--output-dir {out} exists and is not a directory")

    resolved = resolve_model(checkpoints[0].base)
    source = str(resolved.path) if resolved.path is not None else resolved.reload_id
    model_fp = fingerprint(resolved)
    rep_dir = out / "representations"
    methods = {"base": "base", **{ck.name: ck.method for ck in checkpoints}}
    plan = [("base", None)] + [(ck.name, ck) for ck in checkpoints]

    def load_base():
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device)

    tokenizer = None
    reps: dict[str, dict[str, np.ndarray]] = {}
    for name, ck in plan:
        adapter_fp = ck.fingerprint() if ck else None
        keys = {lang: _rep_key(model_fp, adapter_fp, sentences[lang], opts, dtype_name) for lang in langs}
        paths = {lang: rep_dir / name / f"{lang}.safetensors" for lang in langs}
        if not all(_cached(paths[lang], keys[lang]) for lang in langs):
            if tokenizer is None:
                tokenizer = load_tokenizer(source)
            model = load_base()
            if ck is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(ck.adapter_dir)).to(device)
            for lang in langs:
                if _cached(paths[lang], keys[lang]):
                    continue
                if opts.progress:
                    print(f"reprtools: capturing {name} / {lang} ({n} sentences)", file=sys.stderr, flush=True)
                layers = capture(model, tokenizer, sentences[lang], pool=opts.pool, batch_size=opts.batch_size,
                                 max_length=opts.max_length, device=device, progress=opts.progress)
                save_representations(paths[lang], layers, keys[lang])
            del model
        reps[name] = {lang: load_representations(paths[lang]) for lang in langs}

    if opts.progress:
        print("reprtools: computing measures", file=sys.stderr, flush=True)
    rows = compute_metrics(reps, methods, langs, opts.bootstrap, opts.seed)
    metrics_csv = out / "metrics.csv"
    write_metrics_csv(rows, metrics_csv)
    matrices = layer_cka_matrices(reps, langs)
    _save_npz(out / "layer_cka.npz", matrices)

    figures: list[Path] = []
    if opts.figures:
        figures = draw(out)
    summary = {
        "base_model": {"name_or_path": checkpoints[0].base, "fingerprint_sha256": model_fp},
        "checkpoints": [{"name": ck.name, "method": ck.method, "path": str(ck.path)} for ck in checkpoints],
        "langs": langs,
        "data": {"spec": opts.data, "sentences_per_lang": n, "sha256": parallel_sha256(sentences)},
        "layers": int(next(iter(reps["base"].values())).shape[0]),
        "pool": opts.pool,
        "dtype": dtype_name,
        "device": str(device),
        "bootstrap": opts.bootstrap,
        "mean_cka_to_base": {
            ck.name: float(np.mean([r["value"] for r in rows if r["checkpoint"] == ck.name
                                    and r["reference"] == "base" and r["metric"] == "cka_linear"]))
            for ck in checkpoints
        },
        "files": {"metrics": "metrics.csv", "layer_cka": "layer_cka.npz", "representations": "representations/",
                  "figures": [str(p.relative_to(out)) for p in figures]},
        "wall_time_s": time.time() - started,
        "options": asdict(opts),
    }
    write_json(out / "summary.json", summary)
    return ProbeResult(out, metrics_csv, rows, summary, figures)


def draw(probe_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, width: str = "two",
         formats=("pdf", "png", "svg")) -> list[Path]:
    """Redraw the heatmaps and LaTeX tables from ``metrics.csv`` (and ``layer_cka.npz`` beside it) alone."""
    from reprtools.figures import draw_all, write_tables

    src = Path(probe_dir).expanduser()
    metrics = src if src.suffix == ".csv" else src / "metrics.csv"
    if not metrics.is_file():
        raise ReprtoolsError(f"no metrics.csv at {metrics}; run `reprtools probe` first or point at its output")
    base = metrics.parent
    target = Path(out_dir).expanduser() if out_dir else base
    layer_cka = base / "layer_cka.npz"
    written = draw_all(metrics, target / "figures", layer_cka=layer_cka if layer_cka.is_file() else None,
                       width=width, formats=tuple(formats))
    written += write_tables(metrics, target / "tables")
    return written
