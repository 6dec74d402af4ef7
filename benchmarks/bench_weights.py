"""Benchmark: the factored SVD of rank-r updates (``factored_svd``: two thin QRs and an r x r SVD) against
materialising every ``ΔW = B A`` and taking its full SVD; the base weight's singular vectors from its Gram matrix
in float64 (``gram_svd``, once per base, then cached) against LAPACK's SVD; and the top-k of ``W + ΔW`` that the
intruder count uses (``top_singular_vectors`` iterated from W's and ΔW's top vectors) against the full SVD of
``W + ΔW``.

The module shapes come from a model config built on the meta device (no weights are read or allocated); a few
layers (``--layers``) get real random weights and random rank-r adapters, those are timed, and the whole-model
time is extrapolated by the number of layers.  Both routes must agree: the top-r singular values to a relative
1e-6 (float64) / 1e-3 (float32) and the spans of the top-r singular vectors (subspace similarity φ = 1 within the
same tolerance), and each of W's singular vectors (|cosine| 1 within it).  The random weights have a decaying spectrum (singular values ∝ 0.99^i), as trained weights do,
so the top-k of ``W + ΔW`` is well separated, as in a real model.

    python benchmarks/bench_weights.py                     # the default model's shapes (Gemma 3 270M) on the CPU
    python benchmarks/bench_weights.py --model llama-8b --device cuda --layers 2
    python benchmarks/bench_weights.py --quick             # a smoke run on small shapes

``--real CHECKPOINT`` times what ``reprtools weights`` measures on a real checkpoint (all its modules, or the
first ``--layers`` blocks) three ways, in one run: the route it takes with an empty cache of the base's singular
vectors (first run), again with that cache filled (every later run on the base), and the obvious alternative --
every matrix (W, ΔW, W + ΔW) materialised in float64 and decomposed with LAPACK's full SVD.  All three must agree:
the cached run's numbers identical to the first run's, and both within a relative 1e-8 of the float64 route's
(intruder counts equal); it prints the smallest distance of the float64 route's cosines from the threshold, how
far any count is from flipping.

    HF_HUB_OFFLINE=1 python benchmarks/bench_weights.py --real /work/runs/dora-hi
"""

from __future__ import annotations

import argparse
import time

import torch

from reprtools.measures import weights as mw

#: Config shapes (no weights): an 8B Llama (Llama 3 8B's sizes) and the default model's (Gemma 3 270M).
CONFIGS = {
    "llama-8b": dict(kind="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=8),
    "gemma3-270m": dict(kind="gemma3_text", hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=256),
    "small": dict(kind="llama", hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2),
}


def block_shapes(name: str) -> tuple[list[tuple[str, int, int]], int]:
    """``[(module, out, in)]`` of the first block's linear layers, and the number of blocks (meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(CONFIGS[name])
    config = AutoConfig.for_model(spec.pop("kind"), vocab_size=256, **spec)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes = [(n.rsplit(".", 1)[-1], m.out_features, m.in_features) for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and ".layers.0." in n]
    return shapes, config.num_hidden_layers


def random_weight(out: int, inp: int, gen, dtype, device) -> torch.Tensor:
    """A random (out, in) matrix with singular values 0.99^i: Q1 diag(s) Q2ᵀ with Gaussian-orthonormal factors."""
    k = min(out, inp)
    q1, _ = torch.linalg.qr(torch.randn(out, k, generator=gen, dtype=dtype))
    q2, _ = torch.linalg.qr(torch.randn(inp, k, generator=gen, dtype=dtype))
    s = 0.99 ** torch.arange(k, dtype=dtype)
    return ((q1 * s) @ q2.T).to(device)


def _timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return value, time.perf_counter() - start


def bench_module(out, inp, rank, top_k, gen, dtype, device) -> dict:
    """Both routes on one random module; the agreement of their results."""
    w = random_weight(out, inp, gen, dtype, device)
    b = (0.05 * torch.randn(out, rank, generator=gen, dtype=dtype)).to(device)
    a = torch.randn(rank, inp, generator=gen, dtype=dtype).to(device)
    (uf, sf, vf), t_fact = _timed(lambda: mw.factored_svd(b, a, dtype=dtype), device)
    (uu, su, _), t_full = _timed(lambda: torch.linalg.svd(b @ a, full_matrices=False), device)
    (ug, _, _), t_gram = _timed(lambda: mw.gram_svd(w, dtype=torch.float64), device)
    (uw, _, _), t_wsvd = _timed(lambda: torch.linalg.svd(w, full_matrices=False), device)
    tuned = w + b @ a
    start = torch.cat([ug[:, :top_k + 10].to(dtype), uf], dim=1)
    (ut, st, _), t_topk = _timed(lambda: mw.top_singular_vectors(tuned, top_k, dtype=dtype, exact_below=0,
                                                                 niter=4, start=start), device)
    (ux, sx, _), t_tfull = _timed(lambda: torch.linalg.svd(tuned, full_matrices=False), device)
    return {
        "factored": t_fact, "full": t_full, "gram": t_gram, "base_svd": t_wsvd, "topk": t_topk, "topk_full": t_tfull,
        "sigma_err": float(((sf - su[:rank]).abs() / su[0]).max()),
        "phi": mw.subspace_similarity(uf, uu[:, :rank]),
        "base_cos": float((ug.to(uw) * uw).sum(0).abs().min()),
        "topk_sigma_err": float(((st - sx[:top_k]).abs() / sx[0]).max()),
        "topk_phi": mw.subspace_similarity(ut, ux[:, :top_k]),
    }


def run(name: str, layers: int, rank: int, top_k: int, dtype, device) -> None:
    shapes, n_blocks = block_shapes(name)
    gen = torch.Generator().manual_seed(0)
    bench_module(64, 48, rank, top_k, gen, dtype, device)  # warm-up: library loading and kernel selection untimed
    totals = {k: 0.0 for k in ("factored", "full", "gram", "base_svd", "topk", "topk_full")}
    worst = {"sigma_err": 0.0, "topk_sigma_err": 0.0, "phi": 1.0, "topk_phi": 1.0, "base_cos": 1.0}
    for _ in range(layers):
        for _module, out, inp in shapes:
            r = bench_module(out, inp, rank, top_k, gen, dtype, device)
            for k in totals:
                totals[k] += r[k]
            for k in ("sigma_err", "topk_sigma_err"):
                worst[k] = max(worst[k], r[k])
            for k in ("phi", "topk_phi", "base_cos"):
                worst[k] = min(worst[k], r[k])
    scale = n_blocks / layers
    tol = 1e-6 if dtype == torch.float64 else 1e-3
    agree = (worst["sigma_err"] < tol and 1 - worst["phi"] < tol and worst["topk_sigma_err"] < tol
             and 1 - worst["topk_phi"] < tol and 1 - worst["base_cos"] < tol)
    print(f"{name}: {n_blocks} blocks x {len(shapes)} modules, rank {rank}, top-{top_k}, {str(dtype)[6:]} on {device}; "
          f"timed {layers} block(s), whole model extrapolated x{scale:g}")
    print(f"  spectrum of ΔW     factored {totals['factored'] * scale:9.3f} s   full SVD {totals['full'] * scale:9.3f} s"
          f"   ratio {totals['full'] / max(totals['factored'], 1e-12):8.1f}x   max |Δσ|/σ₁ {worst['sigma_err']:.1e}"
          f"   min φ {worst['phi']:.9f}")
    print(f"  W's vectors        Gram f64   {totals['gram'] * scale:7.3f} s   full SVD {totals['base_svd'] * scale:9.3f} s"
          f"   ratio {totals['base_svd'] / max(totals['gram'], 1e-12):8.1f}x   (once per base, then cached)"
          f"   min |cos| {worst['base_cos']:.9f}")
    print(f"  top-k of W + ΔW    iterated {totals['topk'] * scale:9.3f} s   full SVD {totals['topk_full'] * scale:9.3f} s"
          f"   ratio {totals['topk_full'] / max(totals['topk'], 1e-12):8.1f}x   max |Δσ|/σ₁ {worst['topk_sigma_err']:.1e}"
          f"   min φ {worst['topk_phi']:.9f}")
    print(f"  agree: {'yes' if agree else 'NO'} (tolerance {tol:g})")
    if not agree:
        raise SystemExit(1)


def reference_values(update, weight, top_k: int, threshold: float) -> tuple[dict, float]:
    """The obvious route for one module: ΔW, W and W + ΔW in float64, each through LAPACK's full SVD; the values
    ``reprtools weights`` reports and the intruder cosines' smallest distance from ``threshold``."""
    w = weight.double()
    delta = update.B.double() @ update.A.double() if update.factored else update.matrix().double()
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    values = {"update_norm_relative": mw.relative_update_norm(S, w)}
    r = min(update.rank, mw.numerical_rank(S))
    if r > 0:
        values["update_stable_rank"] = mw.stable_rank(S)
        values["update_effective_rank"] = mw.effective_rank(S)
        values["amplification_factor"] = mw.amplification_factor(w, U[:, :r], S, Vh[:r].T)
    base = torch.linalg.svd(w, full_matrices=False)[0]
    tuned = torch.linalg.svd(w + delta, full_matrices=False)[0][:, :top_k]
    best = (base.T @ tuned).abs().amax(dim=0)
    values["intruder_dimensions"] = float((best < threshold).sum())
    return values, float((best - threshold).abs().min())


def run_real(path: str, layers: int | None, top_k: int, threshold: float) -> None:
    import tempfile
    from pathlib import Path

    from reprtools import weights as rw
    from reprtools.checkpoints import read_checkpoints

    (ck,) = read_checkpoints([path])
    model = rw._load_base(ck.base, torch.device("cpu"))
    with torch.no_grad():
        updates = [u for u in rw._read_checkpoint_updates(model, ck) if layers is None or u.layer <= layers]
        weights = rw.base_weights(model, [u.name for u in updates])
        timed, values = {}, {}
        with tempfile.TemporaryDirectory() as cache:
            for run in ("first run", "cached"):
                start = time.perf_counter()
                measured = rw.measure_all(model, {ck.name: updates}, top_k, threshold, cache=Path(cache))
                timed[run] = time.perf_counter() - start
                values[run] = [mm.values for mm in measured[ck.name]]
        start, reference, margin = time.perf_counter(), [], 1.0
        for u in updates:
            v, m = reference_values(u, weights[u.name], top_k, threshold)
            reference.append(v)
            margin = min(margin, m)
        timed["float64 SVDs"] = time.perf_counter() - start
    worst: dict[str, float] = {}
    for ours, ref in zip(values["first run"], reference):
        for metric in ref:
            if metric not in ours:
                worst[metric] = float("inf")
                continue
            err = abs(ours[metric] - ref[metric]) / max(abs(ref[metric]), 1e-300)
            worst[metric] = max(worst.get(metric, 0.0), err)
    identical = values["first run"] == values["cached"]
    agree = identical and all(err < (0.5 if m == "intruder_dimensions" else 1e-8) for m, err in worst.items())
    print(f"{ck.name} on {ck.base}: {len(updates)} modules, top-{top_k}, threshold {threshold}, "
          f"{torch.get_num_threads()} torch thread(s)")
    for run in ("first run", "cached"):
        print(f"  reprtools weights, {run:9s} {timed[run]:8.2f} s   float64 SVDs {timed['float64 SVDs']:8.2f} s   "
              f"ratio {timed['float64 SVDs'] / max(timed[run], 1e-12):6.1f}x")
    print("  largest relative difference from the float64 route: "
          + ", ".join(f"{m} {e:.1e}" for m, e in sorted(worst.items())))
    print(f"  intruder cosines' smallest distance from the threshold (float64 route): {margin:.2e}")
    print(f"  cached run identical to the first: {'yes' if identical else 'NO'}")
    print(f"  agree: {'yes' if agree else 'NO'} (relative 1e-8; intruder counts equal)")
    if not agree:
        raise SystemExit(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m", choices=sorted(CONFIGS))
    parser.add_argument("--layers", type=int, default=None,
                        help="Blocks to time (the rest extrapolated; default 1); with --real, the first blocks "
                             "measured (default all).")
    parser.add_argument("--real", metavar="CHECKPOINT", default=None,
                        help="Time reprtools weights on this checkpoint (first run, cached) against float64 SVDs.")
    parser.add_argument("--rank", type=int, default=16, help="Adapter rank (16 = a rank-8 PiSSA as saved).")
    parser.add_argument("--top-k", type=int, default=mw.INTRUDER_TOP_K)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "float64"],
                        help="Default: float64 on the CPU, float32 on a GPU (what reprtools weights uses).")
    parser.add_argument("--quick", action="store_true", help="Small shapes, one block.")
    args = parser.parse_args(argv)
    if args.real:
        run_real(args.real, args.layers, args.top_k, mw.INTRUDER_THRESHOLD)
        return
    args.layers = 1 if args.layers is None else args.layers
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float64 if device.type == "cpu" else torch.float32)
    if args.quick:
        args.model, args.layers = "small", 1
    torch.manual_seed(0)
    run(args.model, max(1, args.layers), args.rank, args.top_k, dtype, device)


if __name__ == "__main__":
    main()
