"""``reprtools weights``: how each adapter changes the weight matrices themselves.

For every adapted module of every checkpoint, the update ``ΔW`` (so that the merged weight is ``W + ΔW``) is read
exactly from the adapter as peft loads it on its base, in the orientation of ``torch.nn.Linear`` (out, in):

* LoRA and PiSSA (saved converted for the original base, a rank-2r LoRA): ``ΔW = s · B A`` with peft's scaling
  ``s`` (``alpha / r``, or ``alpha / √r`` with rsLoRA, per-module rank and alpha patterns included);
* VeRA (Kopiczko et al., 2024): ``ΔW = diag(λ_b) B_shared[:out] diag(λ_d) A_shared[:, :in]``;
* AdaLoRA (Zhang et al., 2023): ``ΔW = B (A ⊙ E) · alpha / ranknum`` with the singular-value vector ``E`` of
  the ranks kept after pruning (peft resizes a saved AdaLoRA to them on load);
* DoRA (Liu et al., 2024): ``W' = m / ‖W + s B A‖_row ⊙ (W + s B A)`` (the magnitude ``m`` rescales every output
  row), so ``ΔW = W' − W`` is materialised -- the only method whose update is not a low-rank product; its
  amplification factor and subspace similarity use the top-r directions of that full-rank update (r = its LoRA
  rank), its norm and spectrum all of it.

Factored updates stay factored: their SVDs come from :func:`reprtools.measures.weights.factored_svd`; DoRA's
materialised update and the base weights go through their Gram matrices in float64 (``gram_svd``).  The measures
(:mod:`reprtools.measures.weights`) are computed per module; the base weight's singular vectors, which the
intruder-dimension count compares with, are computed once per base weight and kept in the reprtools cache
(:func:`vectors_cache`, keyed by a content hash of the weight), so a later run on the same base reads them; the
top-k of ``W + ΔW`` are iterated from W's and ΔW's top vectors.  ``benchmarks/bench_weights.py --real`` checks the
numbers against float64 LAPACK SVDs of everything (relative 1e-13 on the default model; intruder counts equal).

Rows go to ``weights.csv`` in the shared results schema (:mod:`reprtools.results`) with ``comparison`` =
``weights``: ``module`` names the matrix by its role (``q``, ``k``, ``v``, ``o``, ``gate``, ``up``, ``down``; any
other name, e.g. a fused ``qkv_proj`` or ``gate_up_proj``, as it is) and ``layer`` is the block's index + 1, the
numbering of the probe's hidden states (layer i is the output of block i), so a weight change and the
representation shift it causes share a layer number.  Rows against another checkpoint (``reference``) give the
subspace similarity of the two updates' singular directions; where several runs of one method differ only in seed,
rows with an empty ``checkpoint`` and ``reference`` = ``seeds`` give their mean over the seed pairs, the noise
floor of that similarity.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures import weights as mw

if TYPE_CHECKING:
    import pandas as pd

ROLES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
         "down_proj": "down"}
_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")


def module_role(name: str) -> tuple[int, str]:
    """``(layer, role)`` of a module path such as ``model.layers.3.self_attn.q_proj`` -> ``(4, "q")``: the block's
    index + 1 (the probe's layer numbering; -1 outside the blocks) and the role, or the last name as it is."""
    match = _BLOCK.search(name)
    layer = int(match.group(1)) + 1 if match else -1
    last = name.rsplit(".", 1)[-1]
    return layer, ROLES.get(last, last)


# ---------------------------------------------------------------------------------------------------- updates
@dataclass
class Update:
    """``ΔW`` of one adapted module, (out, in): the factors ``B`` (out, r) and ``A`` (r, in) with ``ΔW = B A``;
    for DoRA also the ``magnitude`` vector and the base ``weight`` (a reference, not a copy), from which
    :meth:`matrix` forms its update when asked -- DoRA's is not a low-rank product, so reading a whole model's
    updates stays as small as its adapters.  ``rank`` is the adapter's rank r."""

    name: str
    layer: int
    module: str
    rank: int
    B: torch.Tensor
    A: torch.Tensor
    magnitude: torch.Tensor | None = None
    weight: torch.Tensor | None = None

    @property
    def factored(self) -> bool:
        return self.magnitude is None

    def matrix(self) -> torch.Tensor:
        """``ΔW`` formed: ``B A``, or DoRA's merged weight less the base (float64 on a CPU, else float32)."""
        if self.factored:
            return self.B @ self.A
        return _dora_update(self.weight, self.magnitude, self.B, self.A)

    def svd(self, dtype=torch.float64, matrix: torch.Tensor | None = None):
        """``(U, S, V)`` of ``ΔW``: from the factors, or of ``matrix`` (:meth:`matrix`, if already formed) through
        its Gram matrix in float64 (:func:`~reprtools.measures.weights.gram_svd`: all singular values to 1.5e-8 σ₁,
        ``dtype`` notwithstanding; the top-r singular vectors, all that the measures use)."""
        if self.factored:
            return mw.factored_svd(self.B, self.A, dtype=dtype)
        return mw.gram_svd(self.matrix() if matrix is None else matrix, k=self.rank, dtype=torch.float64)


def _base_matrix(layer) -> torch.Tensor:
    """The base weight in (out, in) orientation (GPT-2 style Conv1D layers store it transposed)."""
    weight = layer.get_base_layer().weight.detach()
    return weight.T if getattr(layer, "fan_in_fan_out", False) else weight


def _lora_factors(layer, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
    scaling = float(layer.scaling[adapter])
    return layer.lora_B[adapter].weight.detach() * scaling, layer.lora_A[adapter].weight.detach()


def _dora_update(weight: torch.Tensor, magnitude: torch.Tensor, B: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """DoRA's merged weight less the base, as peft merges it: ``m / ‖W + BA‖_row`` scales each output row."""
    dtype = torch.float64 if weight.device.type == "cpu" else torch.float32
    w = weight.to(dtype)
    combined = w + B.to(dtype) @ A.to(dtype)
    return (magnitude.to(dtype).reshape(-1) / torch.linalg.vector_norm(combined, dim=1))[:, None] * combined - w


def _vera_factors(layer, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
    out_features, in_features = _base_matrix(layer).shape
    B = layer.vera_B[adapter][:out_features, :].detach()
    A = layer.vera_A[adapter][:, :in_features].detach()
    lambda_b = layer.vera_lambda_b[adapter].detach()
    lambda_d = layer.vera_lambda_d[adapter].detach()
    return lambda_b[:, None] * B, lambda_d[:, None] * A


def _adalora_factors(layer, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
    # the same 1e-5 that peft's SVDLinear.get_delta_weight adds, so the update is exactly what peft merges
    scale = float(layer.scaling[adapter]) / (float(layer.ranknum[adapter]) + 1e-5)
    A = layer.lora_A[adapter].detach() * layer.lora_E[adapter].detach()
    return layer.lora_B[adapter].detach() * scale, A


def _layer_update(name: str, layer, adapter: str) -> Update:
    from peft.tuners.adalora.layer import AdaLoraLayer
    from peft.tuners.lora.layer import LoraLayer
    from peft.tuners.vera.layer import VeraLayer

    layer_index, role = module_role(name)
    if isinstance(layer, AdaLoraLayer):
        B, A = _adalora_factors(layer, adapter)
    elif isinstance(layer, VeraLayer):
        B, A = _vera_factors(layer, adapter)
    elif isinstance(layer, LoraLayer):
        B, A = _lora_factors(layer, adapter)
        if layer.use_dora.get(adapter, False):
            magnitude = layer.lora_magnitude_vector[adapter].weight.detach()
            return Update(name, layer_index, role, A.shape[0], B, A, magnitude, _base_matrix(layer))
    else:
        raise ReprtoolsError(f"{name}: adapter layer {type(layer).__name__} is not one of LoRA, DoRA, PiSSA, VeRA "
                             "or AdaLoRA")
    return Update(name, layer_index, role, A.shape[0], B, A)


def _is_linear(layer) -> bool:
    base = layer.get_base_layer()
    return isinstance(base, torch.nn.Linear) or type(base).__name__ == "Conv1D"


def read_updates(peft_model, adapter: str = "default") -> list[Update]:
    """Every adapted linear module's :class:`Update` in a ``PeftModel`` (module order).  Adapted embeddings or
    convolutions (not what ``all-linear`` targets) are left out: their updates are not weight matrices in the
    sense of the measures."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    updates = []
    for name, module in peft_model.named_modules():
        if isinstance(module, BaseTunerLayer) and _is_linear(module):
            short = name.removeprefix("base_model.model.")
            updates.append(_layer_update(short, module, adapter))
    if not updates:
        raise ReprtoolsError("the adapter adapts no linear layer of its base model")
    return updates


def base_weights(model, names) -> dict[str, torch.Tensor]:
    """The base weights (out, in) of the modules ``names`` of an unwrapped model."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        module = modules.get(name)
        if module is None or getattr(module, "weight", None) is None:
            raise ReprtoolsError(f"the base model has no weight matrix {name}; is this checkpoint for another base?")
        weight = module.weight.detach()
        out[name] = weight.T if type(module).__name__ == "Conv1D" else weight
    return out


# --------------------------------------------------------------------------------------------------- measures
@dataclass
class ModuleMeasures:
    """One checkpoint's update of one module, measured: rows for the table and the update's top-r singular
    directions (kept for the between-checkpoint comparison)."""

    update: Update
    values: dict[str, float]
    spectrum: torch.Tensor
    U: torch.Tensor
    V: torch.Tensor


def _dtype_for(device: torch.device) -> torch.dtype:
    return torch.float64 if device.type == "cpu" else torch.float32


#: The intruder count compares cosines with a threshold (0.5 by default), so float32 singular vectors are plenty:
#: against float64 SVDs throughout, the largest cosines of W + ΔW's top vectors with W's differ by < 1e-4 on the
#: default model's DoRA updates (``benchmarks/bench_weights.py --real``).
INTRUDER_DTYPE = torch.float32
#: Subspace iterations for W + ΔW's top-k from W's and ΔW's top vectors (:func:`~reprtools.measures.weights.
#: top_singular_vectors` with ``start``), and the extra columns of W's taken into the start.
INTRUDER_NITER, INTRUDER_OVERSAMPLE = 4, 10
_CACHE_VERSION = "1"  # bump when what a cached file holds changes


def _weight_digest(weight: torch.Tensor) -> str:
    """A content hash of a weight: its dtype, shape and bytes (blake2b, 128 bits)."""
    t = weight.detach().contiguous().cpu()
    digest = hashlib.blake2b(f"{t.dtype}|{tuple(t.shape)}".encode(), digest_size=16)
    digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


#: The most the base weights' singular vectors may take in the cache (GB; ``REPRTOOLS_WEIGHTS_CACHE_GB``): about
#: 0.3 GB for Gemma 3 270M, but about 22 GB for an 8B Llama (the thin U of its MLP projections), which a user should
#: ask for rather than find in ~/.cache.
CACHE_BUDGET_GB = 4.0


def cache_within_budget(model, names) -> tuple[bool, float]:
    """Whether the float32 left singular vectors of the modules ``names`` (out x min(out, in) each) fit within
    ``REPRTOOLS_WEIGHTS_CACHE_GB`` (default :data:`CACHE_BUDGET_GB`), and their size in GB."""
    elements = sum(w.shape[0] * min(w.shape) for w in base_weights(model, names).values())
    size_gb = elements * torch.finfo(INTRUDER_DTYPE).bits / 8 / 1e9
    try:
        budget = float(os.environ.get("REPRTOOLS_WEIGHTS_CACHE_GB", CACHE_BUDGET_GB))
    except ValueError:
        raise ReprtoolsError("REPRTOOLS_WEIGHTS_CACHE_GB must be a number of gigabytes, e.g. 30") from None
    return size_gb <= budget, size_gb


def _file_name(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``.``, ``_`` and ``-`` made one ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")


def vectors_cache(base: str):
    """Where the base weights' singular vectors of ``base`` are kept: ``CACHE/weights/BASE``
    (:func:`reprtools.models.cache_dir`)."""
    from reprtools.models import cache_dir

    return cache_dir() / "weights" / _file_name(base)


def _read_vectors(path, shape) -> torch.Tensor | None:
    """The cached vectors at ``path``, or None if absent or not what this version writes (then recomputed)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            ok = (f.metadata() or {}).get("version") == _CACHE_VERSION
            U = f.get_tensor("U") if ok else None
    except Exception:  # noqa: BLE001 - a truncated or foreign file is recomputed and overwritten, never a traceback
        return None
    if U is None or U.dtype != INTRUDER_DTYPE or U.ndim != 2 or U.shape[0] != shape[0] \
            or not 0 < U.shape[1] <= min(shape) or not bool(torch.isfinite(U).all()):
        return None
    return U


def base_vectors(weight: torch.Tensor, cache=None, name: str = "weight") -> torch.Tensor:
    """``W``'s left singular vectors (all of them, as Shuttleworth et al. compare with; float32): read from
    ``cache`` (a folder, :func:`vectors_cache`) if there, else computed and stored there.  Computed once per base
    weight: :func:`~reprtools.measures.weights.gram_svd` in float64 (to ~1e-14 of LAPACK's float64 SVD), a file
    per weight named by module, shape and a content hash of the weight, so a changed weight is a new file;
    written atomically in safetensors, and one that is unreadable or malformed is recomputed."""
    from reprtools.fileio import atomic_path

    path = None
    if cache is not None:
        out, inp = weight.shape
        path = cache / f"{_file_name(name)}-{out}x{inp}-{_weight_digest(weight)}.safetensors"
        U = _read_vectors(path, weight.shape)
        if U is not None:
            return U.to(weight.device)
    U, _, _ = mw.gram_svd(weight, dtype=torch.float64)
    U = U.to(INTRUDER_DTYPE).contiguous()
    if path is not None:
        from safetensors.torch import save_file

        try:
            with atomic_path(path) as tmp:
                save_file({"U": U.cpu()}, str(tmp), metadata={"version": _CACHE_VERSION, "module": name})
        except Exception:  # noqa: BLE001 - a read-only or full cache (OSError, safetensors' own error) costs time only
            pass
    return U


def measure_update(update: Update, weight: torch.Tensor, vectors: torch.Tensor, top_k: int = mw.INTRUDER_TOP_K,
                   threshold: float = mw.INTRUDER_THRESHOLD) -> ModuleMeasures:
    """Every per-module measure of ``update`` on its base ``weight`` (``vectors``: :func:`base_vectors` of it).
    The top-k of ``W + ΔW`` for the intruder count are iterated from the top vectors of ``W`` and of ``ΔW``, the
    subspace they lie near (:func:`~reprtools.measures.weights.top_singular_vectors` with ``start``).

    A zero update (an untrained or fully pruned module) has only its norm (0) and no intruders: the ratios that
    divide by its spectrum are undefined and left out."""
    dtype = _dtype_for(weight.device)
    delta = update.matrix()
    U, S, V = update.svd(dtype, delta)
    w = weight.to(dtype)
    values = {"update_norm_relative": mw.relative_update_norm(S, w)}
    r = min(update.rank, mw.numerical_rank(S), U.shape[1])
    if r > 0:
        values["update_stable_rank"] = mw.stable_rank(S)
        values["update_effective_rank"] = mw.effective_rank(S)
        values["amplification_factor"] = mw.amplification_factor(w, U[:, :r], S, V[:, :r])
    tuned_weight = weight.to(INTRUDER_DTYPE) + delta.to(INTRUDER_DTYPE)
    del delta
    start = torch.cat([vectors[:, :top_k + INTRUDER_OVERSAMPLE], U[:, :r].to(vectors)], dim=1)
    tuned, _, _ = mw.top_singular_vectors(tuned_weight, top_k, niter=INTRUDER_NITER, dtype=INTRUDER_DTYPE,
                                          oversample=INTRUDER_OVERSAMPLE, start=start)
    values["intruder_dimensions"] = float(mw.intruder_dimensions(tuned, vectors, threshold, dtype=INTRUDER_DTYPE))
    spectrum = S[:mw.numerical_rank(S)] if update.factored else S  # not a factor's rounding noise
    return ModuleMeasures(update, values, spectrum, U[:, :r], V[:, :r])


def _row(ck, m: Update, metric: str, value: float, reference: str = "base", n=None) -> dict:
    from reprtools import results as R

    return {"checkpoint": ck.name, "method": ck.method, "comparison": R.WEIGHTS, "reference": reference,
            "module": m.module, "layer": m.layer, "metric": metric, "value": value, "n": n, **ck.run_columns()}


def measure_rows(ck, measured: list[ModuleMeasures], top_k: int) -> list[dict]:
    """The table rows of one checkpoint against its base."""
    rows = []
    for mm in measured:
        for metric, value in mm.values.items():
            n = top_k if metric == "intruder_dimensions" else mm.update.rank
            rows.append(_row(ck, mm.update, metric, value, n=n))
    return rows


def similarity_rows(a, b, measured_a: list[ModuleMeasures], measured_b: list[ModuleMeasures]) -> list[dict]:
    """Hu et al.'s φ between two checkpoints' updates, per module present in both: the spans of their top-r left
    (output, ``_out``) and right (input, ``_in``) singular vectors, r each update's own rank."""
    by_name = {mm.update.name: mm for mm in measured_b}
    rows = []
    for ma in measured_a:
        mb = by_name.get(ma.update.name)
        if mb is None or not ma.U.shape[1] or not mb.U.shape[1]:
            continue
        n = min(ma.U.shape[1], mb.U.shape[1])
        rows.append(_row(a, ma.update, "subspace_similarity_out", mw.subspace_similarity(ma.U, mb.U), b.name, n))
        rows.append(_row(a, ma.update, "subspace_similarity_in", mw.subspace_similarity(ma.V, mb.V), b.name, n))
    return rows


def seed_floor_rows(checkpoints, rows: list[dict]) -> list[dict]:
    """Per method with runs that differ only in seed: the mean subspace similarity of their updates over the
    seed pairs (runs with different seeds; a copy of a run is no seed pair), per module (``checkpoint`` empty, ``reference`` = ``seeds``, ``n`` = pairs) -- the floor that a
    similarity between two methods is read against (two seeds of one method need not learn the same
    directions either)."""
    import pandas as pd

    from reprtools.checkpoints import is_seed_pair, seed_groups

    out = []
    for method, members in seed_groups(checkpoints).items():
        by_name = {ck.name: ck for ck in members}
        pairs = pd.DataFrame([r for r in rows if r["checkpoint"] in by_name and r["reference"] in by_name
                              and is_seed_pair(by_name[r["checkpoint"]], by_name[r["reference"]])])
        if pairs.empty:
            continue
        run = {**members[0].run_columns(), "seed": None}
        for (layer, module, metric), values in pairs.groupby(["layer", "module", "metric"])["value"]:
            out.append({"checkpoint": "", "method": method, "comparison": pairs["comparison"].iloc[0],
                        "reference": "seeds", "module": module, "layer": layer, "metric": metric,
                        "value": float(values.mean()), "n": len(values), **run})
    return out


def spectrum_frame(ck, measured: list[ModuleMeasures], top: int = 64) -> "pd.DataFrame":
    """The leading singular values of every update (``spectra.csv``): checkpoint, module path, layer, role,
    index (1 = largest) and value."""
    import pandas as pd

    rows = [{"checkpoint": ck.name, "method": ck.method, "name": mm.update.name, "layer": mm.update.layer,
             "module": mm.update.module, "index": i + 1, "singular_value": float(s)}
            for mm in measured for i, s in enumerate(mm.spectrum[:top].tolist())]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------- command
def _check_options(top_k, threshold, formats=("png",)) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ReprtoolsError(f"--top-k must be a positive integer (the paper's default is {mw.INTRUDER_TOP_K}), "
                             f"got {top_k!r}")
    if not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise ReprtoolsError(f"--threshold must lie in (0, 1) (the paper's default is {mw.INTRUDER_THRESHOLD}), "
                             f"got {threshold!r}")
    bad = [f for f in formats if str(f).lower().lstrip(".") not in ("pdf", "png", "svg")]
    if bad or not formats:
        raise ReprtoolsError(f"figure format(s) {', '.join(map(str, bad)) or '(none)'} unsupported; use pdf, png "
                             "and/or svg")


def _load_base(name: str, device: torch.device):
    from transformers import AutoModelForCausalLM

    from reprtools.models import resolve_model

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar for a model that loads in a blink
    resolved = resolve_model(name)
    source = str(resolved.path) if resolved.path is not None else resolved.reload_id
    try:
        # the dtype it is stored in: every measure upcasts one module at a time, so an 8B bf16 base stays 16 GB
        model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
    except OSError as exc:
        raise ReprtoolsError(f"could not load the base model '{name}': {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()


def _read_checkpoint_updates(model, ck) -> list[Update]:
    from reprtools.checkpoints import adapter_on

    try:
        with adapter_on(model, ck) as wrapped:
            return read_updates(wrapped)
    except (ValueError, RuntimeError) as exc:  # peft: target modules not in the base, or tensors of other shapes
        first = " ".join(str(exc).split())[:300]
        raise ReprtoolsError(f"the adapter of {ck.name} does not load on its base {ck.base} ({first}); was it "
                             "trained on another model?") from None


def measure_all(model, updates: dict[str, list[Update]], top_k: int, threshold: float,
                progress: bool = False, cache=None) -> dict[str, list[ModuleMeasures]]:
    """Every checkpoint's updates (``{checkpoint: [Update]}``) measured, module by module: each base weight's
    singular vectors are read from ``cache`` (a folder, :func:`vectors_cache`) or computed once, used for every
    checkpoint that adapts it, and dropped before the next module, so memory holds one module's SVD at a time (an
    8B model's would not fit on most GPUs at once)."""
    names = list(dict.fromkeys(u.name for ups in updates.values() for u in ups))
    by_name = {ck: {u.name: u for u in ups} for ck, ups in updates.items()}
    measured: dict[str, list[ModuleMeasures]] = {ck: [] for ck in updates}
    for i, name in enumerate(names):
        if progress and (i % 20 == 0 or i == len(names) - 1):
            print(f"reprtools: module {i + 1}/{len(names)} ({name})", file=sys.stderr, flush=True)
        (weight,) = base_weights(model, [name]).values()
        vectors = base_vectors(weight, cache, name)
        for ck, ups in by_name.items():
            if name in ups:
                measured[ck].append(measure_update(ups[name], weight, vectors, top_k, threshold))
        del vectors
    return measured


def weights(checkpoints, output_dir=None, *, top_k: int = mw.INTRUDER_TOP_K,
            threshold: float = mw.INTRUDER_THRESHOLD, device: str = "auto", figures: bool = True,
            formats=("pdf", "png", "svg"), progress: bool = False, cache: bool = True) -> "pd.DataFrame":
    """Measure every adapted module of each checkpoint (paths or :class:`~reprtools.checkpoints.Checkpoint`) on
    their shared base, and the subspace similarity of every pair of checkpoints' updates; write ``weights.csv``
    (the results schema), ``spectra.csv``, ``weights.json`` and (``figures``) ``figures/`` to ``output_dir``
    (default ``FIRST_CHECKPOINT/weights``; figures in each of ``formats``) and return the table.

    ``top_k`` and ``threshold``: how many of ``W + ΔW``'s top singular vectors the intruder count examines and the
    cosine below which one is an intruder (Shuttleworth et al., 2024; defaults :data:`INTRUDER_TOP_K`,
    :data:`INTRUDER_THRESHOLD`).  ``cache``: keep the base weights' singular vectors in the reprtools cache
    (:func:`vectors_cache`) for the next run on this base.  ``table.attrs["output_dir"]`` says where the files
    went."""
    import pandas as pd

    from reprtools import results as R
    from reprtools.capture import resolve_device
    from reprtools.checkpoints import Checkpoint, output_dir as out_dir_for, read_checkpoints
    from reprtools.fileio import atomic_path, write_json

    started = time.time()
    _check_options(top_k, threshold, formats if figures else ("png",))
    checkpoints = read_checkpoints([ck.path if isinstance(ck, Checkpoint) else ck for ck in checkpoints or []])
    out = out_dir_for(output_dir, checkpoints[0], "weights")
    dev = resolve_device(device)
    model = _load_base(checkpoints[0].base, dev)
    rows, spectra = [], []
    with torch.no_grad():
        updates = {}
        for ck in checkpoints:
            if progress:
                print(f"reprtools: reading the updates of {ck.name}", file=sys.stderr, flush=True)
            updates[ck.name] = _read_checkpoint_updates(model, ck)
        if cache:
            names = list(dict.fromkeys(u.name for ups in updates.values() for u in ups))
            cache, size_gb = cache_within_budget(model, names)
            if not cache:
                print(f"reprtools: the base weights' singular vectors would take {size_gb:.1f} GB in the cache, "
                      "more than REPRTOOLS_WEIGHTS_CACHE_GB allows (default "
                      f"{CACHE_BUDGET_GB:g}); computing them without keeping them", file=sys.stderr)
        measured = measure_all(model, updates, top_k, threshold, progress,
                               vectors_cache(checkpoints[0].base) if cache else None)
        for ck in checkpoints:
            rows += measure_rows(ck, measured[ck.name], top_k)
            spectra.append(spectrum_frame(ck, measured[ck.name]))
        for a, b in combinations(checkpoints, 2):
            rows += similarity_rows(a, b, measured[a.name], measured[b.name])
        rows += seed_floor_rows(checkpoints, rows)
    table = R.frame(rows)
    R.write_results(table, out / "weights.csv")
    spectra = pd.concat(spectra, ignore_index=True)
    with atomic_path(out / "spectra.csv") as tmp:
        spectra.to_csv(tmp, index=False, float_format="%.9g")
    write_json(out / "weights.json", {
        "base_model": checkpoints[0].base, "device": str(dev), "top_k": top_k, "threshold": threshold,
        "checkpoints": [{"name": ck.name, "method": ck.method, "seed": ck.seed, "path": str(ck.path),
                         "modules": len(measured[ck.name])} for ck in checkpoints],
        "seconds": round(time.time() - started, 2)})
    if figures:
        from reprtools.report.weights import draw_weights

        draw_weights(table, out / "figures", spectra, formats=formats)
    table.attrs["output_dir"] = str(out)
    return table
