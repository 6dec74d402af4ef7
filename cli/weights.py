"""``reprtools weights``: parse the options and call :func:`reprtools.weights.weights`."""

from __future__ import annotations

import os

import click


def _threads_for_idle_cores() -> None:
    """As many torch threads as cores are idle (the 1-minute load average; at least 1), unless OMP_NUM_THREADS is
    set.  torch's default, a thread per core, spins on cores that other processes use: on 2 shared cores with two
    busy processes the measures of dora-hi took 45 s with 2 threads and 23 s with 1 (9 s and 14 s on idle cores)."""
    import torch

    if os.environ.get("OMP_NUM_THREADS") or not hasattr(os, "getloadavg"):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    idle = int(cores - os.getloadavg()[0] + 0.5)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), idle)))


@click.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--output-dir", "-o", default=None, help="Where to write [default: FIRST_CHECKPOINT/weights].")
@click.option("--top-k", default=10, show_default=True, type=int,
              help="Intruder dimensions: how many top singular vectors of W + \u0394W to examine "
                   "(Shuttleworth et al., 2024).")
@click.option("--threshold", default=0.5, show_default=True, type=float,
              help="Intruder dimensions: a singular vector of W + \u0394W whose largest |cosine| with W's singular "
                   "vectors is below this is an intruder.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.")
@click.option("--formats", default="pdf,png,svg", show_default=True, help="Comma-separated figure formats.")
@click.option("--no-figures", is_flag=True, help="Write the tables only.")
@click.option("--no-cache", is_flag=True,
              help="Neither read nor keep the base weights' singular vectors in the reprtools cache "
                   "(REPRTOOLS_CACHE); computing them is most of a first run's time.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def weights(checkpoints, output_dir, top_k: int, threshold: float, device: str, formats: str, no_figures: bool,
            no_cache: bool, quiet: bool) -> None:
    """Measure how each CHECKPOINT's adapter changes the weight matrices of its base (a reprtools run or a PEFT
    adapter directory; LoRA, DoRA, VeRA, AdaLoRA or PiSSA): relative update norm, stable and effective rank,
    amplification factor and intruder dimensions per module, and the subspace similarity of every pair of
    checkpoints' updates."""
    from pathlib import Path

    from reprtools.weights import weights as run_weights

    _threads_for_idle_cores()
    table = run_weights(list(checkpoints), output_dir, top_k=top_k, threshold=threshold, device=device,
                        figures=not no_figures, formats=[f.strip() for f in formats.split(",") if f.strip()],
                        progress=not quiet, cache=not no_cache)
    norms = table[(table["reference"] == "base") & (table["metric"] == "update_norm_relative")]
    modules = norms.groupby("checkpoint", sort=False)["value"]
    click.echo(f"reprtools: {modules.ngroups} checkpoint(s), {modules.size().max()} adapted modules each; "
               f"{len(table)} numbers in {Path(table.attrs['output_dir']) / 'weights.csv'}")
    for name, value in modules.mean().items():
        click.echo(f"reprtools:   {name}: mean \u2016\u0394W\u2016/\u2016W\u2016 {value:.4g}")
