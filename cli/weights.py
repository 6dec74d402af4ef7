"""``reprtools weights``: parse the options and call :func:`reprtools.weights.weights`."""

from __future__ import annotations

import os

import click


def _cpu_times(cores: set[int]) -> tuple[int, int]:
    """(idle, total) jiffies of ``cores`` so far, from /proc/stat (Linux)."""
    idle = total = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                ticks = [int(x) for x in fields[:8]]
                idle, total = idle + ticks[3] + ticks[4], total + sum(ticks)
    return idle, total


def _threads_for_idle_cores(interval: float = 0.2) -> None:
    """As many torch threads as this process's cores are idle now (sampled from /proc/stat over ``interval``
    seconds; at least 1), unless OMP_NUM_THREADS is set or the sample fails (then torch's default).  The default, a
    thread per core, spins on cores that other processes are using: on 2 shared cores with two busy processes the
    measures of dora-hi took 45 s with 2 threads and 23 s with 1 (9 s and 14 s on idle cores)."""
    import time

    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        cores = os.sched_getaffinity(0)
        idle0, total0 = _cpu_times(cores)
        time.sleep(interval)
        idle1, total1 = _cpu_times(cores)
    except (AttributeError, OSError, ValueError):
        return
    if total1 <= total0:
        return
    idle = len(cores) * (idle1 - idle0) / (total1 - total0)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), int(idle + 0.5))))


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
