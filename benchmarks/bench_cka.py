"""Benchmark: batched layer x layer linear CKA (``cka_linear_matrix``) against a naive per-pair Gram loop.

The naive baseline is the per-pair recipe of Kornblith et al.'s reference notebook, the way per-pair CKA
libraries such as torch_cka work: for every cell (i, j) of the L x L matrix, build both n x n Gram matrices,
centre them, and take the normalised Frobenius inner product -- so each layer's Gram matrix is rebuilt 2L
times.  ``cka_linear_matrix`` builds each one once (or uses the feature-space form when that is cheaper) and
gets all cells from one matmul.

The data are random, seeded, float32 "residual streams": layer l = layer l-1 + noise, so neighbouring layers
are similar and far-apart ones less so.  When the whole naive run would exceed ``--naive-budget`` seconds, only
a random subset of cells is timed and the total is extrapolated to all L x L cells (marked "est.").

    python benchmarks/bench_cka.py                  # the full grid: 19 and 33 layers, d = 640 and 4096, n = 6000
    python benchmarks/bench_cka.py --quick          # a smoke run with n = 1000 and a short naive budget
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch

from reprtools.measures import cka_linear, cka_linear_matrix
from reprtools.measures.cka import _DEFAULT_BLOCK_BYTES, _matrix_costs


def make_layers(n_layers: int, n: int, d: int, seed: int, device: torch.device) -> torch.Tensor:
    """``(L, n, d)`` float32 random walk over layers (a stand-in for a residual stream)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = torch.empty(n_layers, n, d, dtype=torch.float32)
    out[0] = torch.randn(n, d, generator=gen)
    for layer in range(1, n_layers):
        torch.randn(n, d, generator=gen, out=out[layer])
        out[layer].mul_(0.5).add_(out[layer - 1])
    return out.to(device)


# --- naive per-pair baseline (Kornblith et al.'s notebook: gram_linear, center_gram, cka) --------------------


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    return x @ x.T


def center_gram(gram: torch.Tensor) -> torch.Tensor:
    means = gram.mean(dim=0)
    means -= means.mean() / 2
    return gram - means[:, None] - means[None, :]


def cka_naive(gram_x: torch.Tensor, gram_y: torch.Tensor) -> float:
    # the n^2-long sums accumulate in float64, as in cka_linear_matrix, so both are equally accurate
    gx, gy = center_gram(gram_x), center_gram(gram_y)
    num = (gx * gy).sum(dtype=torch.float64)
    return float(num / (torch.linalg.vector_norm(gx, dtype=torch.float64) * torch.linalg.vector_norm(gy, dtype=torch.float64)))


def naive_cell(layers: torch.Tensor, i: int, j: int) -> float:
    return cka_naive(gram_linear(layers[i]), gram_linear(layers[j]))


# --- timing helpers -------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def run_config(args, n_layers: int, d: int, device: torch.device, rng: np.random.Generator) -> dict:
    n = args.n
    layers = make_layers(n_layers, n, d, args.seed, device)
    dtype = getattr(torch, args.dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    feature_cost, gram_cost = _matrix_costs(
        n, d, d, n_layers, n_layers, n_layers * d, n_layers * d, True, itemsize, args.block_bytes
    )
    path = {"auto": "feature" if feature_cost <= gram_cost else "gram"}.get(args.method, args.method)

    batched, t_batched = timed(
        lambda: cka_linear_matrix(layers, dtype=dtype, method=args.method, block_bytes=args.block_bytes), device
    )

    cells = [(i, j) for i in range(n_layers) for j in range(n_layers)]
    order = rng.permutation(len(cells))
    first, t_first = timed(lambda: naive_cell(layers, *cells[order[0]]), device)
    results = {cells[order[0]]: (first, t_first)}
    full = t_first * len(cells) <= args.naive_budget
    spent = t_first
    for k in order[1:]:
        if not full and spent >= args.naive_sample_seconds and len(results) >= args.min_pairs:
            break
        value, t_cell = timed(lambda: naive_cell(layers, *cells[k]), device)
        results[cells[k]] = (value, t_cell)
        spent += t_cell
    per_cell = spent / len(results)
    t_naive = spent if len(results) == len(cells) else per_cell * len(cells)
    max_diff = max(abs(v - batched[i, j]) for (i, j), (v, _) in results.items())

    fp64_diff = math.nan
    if args.fp64_check:
        sample = list(results)[: args.fp64_check]
        fp64_diff = max(
            abs(cka_linear(layers[i], layers[j], dtype=torch.float64) - batched[i, j]) for i, j in sample
        )
    offdiag = batched[~np.eye(n_layers, dtype=bool)]
    del layers
    return {
        "layers": n_layers,
        "d": d,
        "n": n,
        "path": path,
        "naive": t_naive,
        "estimated": len(results) < len(cells),
        "timed": f"{len(results)}/{len(cells)}",
        "batched": t_batched,
        "max_diff": max_diff,
        "fp64_diff": fp64_diff,
        "cka_range": (float(offdiag.min()), float(offdiag.max())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[19, 33], help="numbers of layers (default 19 33)")
    parser.add_argument("--dims", type=int, nargs="+", default=[640, 4096], help="hidden sizes (default 640 4096)")
    parser.add_argument("--n", type=int, default=6000, help="sentences (default 6000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=1000, 10 s naive budget")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="compute dtype of both")
    parser.add_argument("--method", choices=["auto", "feature", "gram"], default="auto", help="batched path")
    parser.add_argument("--block-gb", type=float, default=_DEFAULT_BLOCK_BYTES / 2**30, help="cka_linear_matrix block")
    parser.add_argument("--naive-budget", type=float, default=300.0,
                        help="run every naive cell only if that is estimated to take at most this many seconds")
    parser.add_argument("--naive-sample-seconds", type=float, default=30.0,
                        help="otherwise time random cells for about this long and extrapolate")
    parser.add_argument("--min-pairs", type=int, default=3, help="fewest naive cells to time")
    parser.add_argument("--fp64-check", type=int, default=2, help="cells also checked against float64 cka_linear")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.n = min(args.n, 1000)
        args.naive_budget = min(args.naive_budget, 10.0)
        args.naive_sample_seconds = min(args.naive_sample_seconds, 3.0)
    args.block_bytes = int(args.block_gb * 2**30)
    device = torch.device(args.device)

    print(f"torch {torch.__version__} on {device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads); dtype {args.dtype}; n = {args.n}; seed {args.seed}")
    torch.ones(64, 64, device=device) @ torch.ones(64, 64, device=device)  # warm-up
    rng = np.random.default_rng(args.seed)
    rows = []
    for d in args.dims:
        for n_layers in args.layers:
            row = run_config(args, n_layers, d, device, rng)
            rows.append(row)
            naive = f"{row['naive']:.1f}" + (" (est.)" if row["estimated"] else "")
            print(f"  done: {n_layers} layers, d={d}: naive {naive} s, batched {row['batched']:.2f} s", flush=True)

    header = (f"{'layers':>6} {'d':>5} {'n':>5} {'path':>7} {'naive s':>16} {'cells timed':>11} "
              f"{'batched s':>9} {'speed-up':>8} {'max|diff|':>9} {'vs fp64':>8} {'CKA range':>13}")
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        naive = f"{r['naive']:.1f}" + (" (est.)" if r["estimated"] else "")
        print(f"{r['layers']:>6} {r['d']:>5} {r['n']:>5} {r['path']:>7} {naive:>16} {r['timed']:>11} "
              f"{r['batched']:>9.2f} {r['naive'] / r['batched']:>7.1f}x {r['max_diff']:>9.1e} "
              f"{r['fp64_diff']:>8.1e} {r['cka_range'][0]:.3f}-{r['cka_range'][1]:.3f}")
    print()
    print("naive s: the per-cell Gram loop over all L x L cells (as per-pair CKA code computes them); '(est.)' = the")
    print("  mean time of the timed cells (a random sample) times L^2.  A naive loop over the upper triangle only")
    print("  would take (L+1)/(2L) of that, i.e. about half the speed-up shown.")
    print("max|diff|: largest |naive - batched| over the timed cells (both in the compute dtype);")
    print("vs fp64: largest |batched - cka_linear(float64)| over a few of those cells.")


if __name__ == "__main__":
    main()
