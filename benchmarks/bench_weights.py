"""Benchmark: the factored SVD of rank-r updates (``factored_svd``: two thin QRs and an r x r SVD) against
materialising every ``ΔW = B A`` and taking its full SVD, and the randomized top-k SVD of ``W + ΔW`` that the
intruder count uses (``top_singular_vectors``) against the full SVD of ``W + ΔW``.

The module shapes come from a model config built on the meta device (no weights are read or allocated); a few
layers (``--layers``) get real random weights and random rank-r adapters, those are timed, and the whole-model
time is extrapolated by the number of layers.  Both routes must agree: the top-r singular values to a relative
1e-6 (float64) / 1e-3 (float32) and the spans of the top-r singular vectors (subspace similarity φ = 1 within the
same tolerance).  The random weights have a decaying spectrum (singular values ∝ 0.99^i), as trained weights do,
so the top-k of ``W + ΔW`` is well separated, as in a real model.

    python benchmarks/bench_weights.py                     # the default model's shapes (Gemma 3 270M) on the CPU
    python benchmarks/bench_weights.py --model llama-8b --device cuda --layers 2
    python benchmarks/bench_weights.py --quick             # a smoke run on small shapes
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
    tuned = w + b @ a
    (ut, st, _), t_topk = _timed(lambda: mw.top_singular_vectors(tuned, top_k, dtype=dtype, exact_below=0), device)
    (ux, sx, _), t_tfull = _timed(lambda: torch.linalg.svd(tuned, full_matrices=False), device)
    return {
        "factored": t_fact, "full": t_full, "topk": t_topk, "topk_full": t_tfull,
        "sigma_err": float(((sf - su[:rank]).abs() / su[0]).max()),
        "phi": mw.subspace_similarity(uf, uu[:, :rank]),
        "topk_sigma_err": float(((st - sx[:top_k]).abs() / sx[0]).max()),
        "topk_phi": mw.subspace_similarity(ut, ux[:, :top_k]),
    }


def run(name: str, layers: int, rank: int, top_k: int, dtype, device) -> None:
    shapes, n_blocks = block_shapes(name)
    gen = torch.Generator().manual_seed(0)
    bench_module(64, 48, rank, top_k, gen, dtype, device)  # warm-up: library loading and kernel selection untimed
    totals = {k: 0.0 for k in ("factored", "full", "topk", "topk_full")}
    worst = {"sigma_err": 0.0, "topk_sigma_err": 0.0, "phi": 1.0, "topk_phi": 1.0}
    for _ in range(layers):
        for _module, out, inp in shapes:
            r = bench_module(out, inp, rank, top_k, gen, dtype, device)
            for k in totals:
                totals[k] += r[k]
            for k in ("sigma_err", "topk_sigma_err"):
                worst[k] = max(worst[k], r[k])
            for k in ("phi", "topk_phi"):
                worst[k] = min(worst[k], r[k])
    scale = n_blocks / layers
    tol = 1e-6 if dtype == torch.float64 else 1e-3
    agree = (worst["sigma_err"] < tol and 1 - worst["phi"] < tol and worst["topk_sigma_err"] < tol
             and 1 - worst["topk_phi"] < tol)
    print(f"{name}: {n_blocks} blocks x {len(shapes)} modules, rank {rank}, top-{top_k}, {str(dtype)[6:]} on {device}; "
          f"timed {layers} block(s), whole model extrapolated x{scale:g}")
    print(f"  spectrum of ΔW     factored {totals['factored'] * scale:9.3f} s   full SVD {totals['full'] * scale:9.3f} s"
          f"   ratio {totals['full'] / max(totals['factored'], 1e-12):8.1f}x   max |Δσ|/σ₁ {worst['sigma_err']:.1e}"
          f"   min φ {worst['phi']:.9f}")
    print(f"  top-k of W + ΔW    randomized {totals['topk'] * scale:7.3f} s   full SVD {totals['topk_full'] * scale:9.3f} s"
          f"   ratio {totals['topk_full'] / max(totals['topk'], 1e-12):8.1f}x   max |Δσ|/σ₁ {worst['topk_sigma_err']:.1e}"
          f"   min φ {worst['topk_phi']:.9f}")
    print(f"  agree: {'yes' if agree else 'NO'} (tolerance {tol:g})")
    if not agree:
        raise SystemExit(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m", choices=sorted(CONFIGS))
    parser.add_argument("--layers", type=int, default=1, help="Blocks to time (the rest extrapolated).")
    parser.add_argument("--rank", type=int, default=16, help="Adapter rank (16 = a rank-8 PiSSA as saved).")
    parser.add_argument("--top-k", type=int, default=mw.INTRUDER_TOP_K)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "float64"],
                        help="Default: float64 on the CPU, float32 on a GPU (what reprtools weights uses).")
    parser.add_argument("--quick", action="store_true", help="Small shapes, one block.")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float64 if device.type == "cpu" else torch.float32)
    if args.quick:
        args.model, args.layers = "small", 1
    torch.manual_seed(0)
    run(args.model, max(1, args.layers), args.rank, args.top_k, dtype, device)


if __name__ == "__main__":
    main()
