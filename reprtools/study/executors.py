"""Executors: how a study's runs are started.  One small interface -- ``submit(plan, runs, retry_failed,
after_run)`` returns each run's worker exit code -- so a cluster executor is a class beside :class:`LocalExecutor`.

``local`` starts each run as its own ``python -m reprtools.study.worker RUN_DIR`` subprocess; the worker's output
goes to ``RUN_DIR/worker.log`` (appended, one section per attempt).  Without GPUs the runs go one after another; on
a machine with GPUs each run gets its model's ``[resources] gpus`` of them through ``CUDA_VISIBLE_DEVICES`` and
runs as soon as that many are free, so several run at once (a run of more than one GPU trains under torchrun, one
process per GPU).  ``slurm`` submits the same worker command as Slurm job arrays through submitit
(:mod:`reprtools.study.slurm`), grouped by the runs' resources.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

from reprtools.errors import ReprtoolsError

EXECUTORS = ("local", "slurm")
LOG_FILE = "worker.log"


def worker_command(run_dir, retry_failed: bool = False, nproc: int = 1) -> list[str]:
    cmd = [sys.executable, "-m", "reprtools.study.worker", str(run_dir)]
    return cmd + (["--retry-failed"] if retry_failed else []) + (["--nproc", str(nproc)] if nproc > 1 else [])


def worker_env() -> dict[str, str]:
    """This process's environment, with the folder this reprtools is imported from first on ``PYTHONPATH``: the
    worker runs the same reprtools as the study, installed or not."""
    from pathlib import Path

    import reprtools

    env = dict(os.environ)
    root = str(Path(reprtools.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def visible_gpus() -> list[str]:
    """The GPUs this machine lets the study use: the entries of ``CUDA_VISIBLE_DEVICES`` where it is set (empty:
    none), else ``0 .. torch.cuda.device_count() - 1``."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA: no GPUs
        return []


def _log_header(run, cmd: list[str], devices) -> None:
    run.dir.mkdir(parents=True, exist_ok=True)
    where = f" CUDA_VISIBLE_DEVICES={','.join(devices)}" if devices else ""
    with open(run.dir / LOG_FILE, "a", encoding="utf-8") as log:
        log.write(f"--- {datetime.now(timezone.utc).isoformat(timespec='seconds')}{where} {' '.join(cmd)}\n")


class LocalExecutor:
    """Each run in its own subprocess: one at a time without GPUs, else one per free set of GPUs.

    ``gpus`` are the GPU ids to share out (``CUDA_VISIBLE_DEVICES`` entries; default :func:`visible_gpus`); each
    run takes its own ``gpus`` (its model's ``[resources]``; all of them when it asks for more than there are;
    ``gpus = 0`` waits for the whole machine and runs alone on whatever the worker finds), waiting in the plan's
    order until enough are free (a run never overtakes an earlier one, so a large run is not starved by small
    ones)."""

    name = "local"

    def __init__(self, echo=None, gpus: list[str] | None = None, poll_s: float = 0.5):
        self.echo = echo or (lambda msg: None)
        self.gpus = [str(g) for g in gpus] if gpus is not None else None
        self.poll_s = poll_s
        self._warned: set[int] = set()

    def _per_run(self, plan, run, gpus: list[str]) -> int:
        """The GPUs ``run`` gets; 0: none assigned (no GPUs here, or the run asks for none)."""
        wanted = max(0, int(run.resources.gpus or 0))
        if not gpus or not wanted:
            return 0
        if wanted > len(gpus) and wanted not in self._warned:
            self._warned.add(wanted)
            self.echo(f"runs of {run.model} ask for {wanted} GPUs, this machine has {len(gpus)}: each runs on all "
                      f"of them")
        return min(wanted, len(gpus))

    def submit(self, plan, runs, retry_failed: bool = False, after_run=None) -> dict[str, int]:
        """Run each of ``runs`` in a worker subprocess, as many at once as the GPUs allow (see the class);
        ``after_run(run)`` is called as each ends (the study rebuilds ``results.csv`` there, so a long study can
        be analysed as it goes)."""
        gpus = visible_gpus() if self.gpus is None else list(self.gpus)
        free = list(gpus) or [None]  # None: one slot, the environment as it is
        slots = len(free)
        pending, running, codes = list(enumerate(runs, 1)), [], {}
        while pending or running:
            while pending:
                i, run = pending[0]
                per_run = self._per_run(plan, run, gpus)
                if len(free) < (per_run or slots):  # a run without GPUs of its own has the machine to itself
                    break
                pending.pop(0)
                taken, free = free[:per_run or slots], free[per_run or slots:]
                devices = taken if per_run else []
                running.append((self._start(run, i, len(runs), devices, retry_failed), run, taken))
            if all(proc.poll() is None for proc, _, _ in running):
                time.sleep(self.poll_s)
            for entry in [e for e in running if e[0].poll() is not None]:
                proc, run, taken = entry
                running.remove(entry)
                free += taken
                codes[run.key] = proc.returncode
                if after_run is not None:
                    after_run(run)
        return codes

    def _start(self, run, i: int, total: int, devices: list[str], retry_failed: bool):
        on = f" on GPU{'s' if len(devices) > 1 else ''} {','.join(devices)}" if devices else ""
        self.echo(f"run {i}/{total}: {run.key} ({run.model} {run.task} {run.method} "
                  f"{'+'.join(run.targets)} ratio {run.ratio:g} seed {run.seed}){on}")
        cmd = worker_command(run.dir, retry_failed, nproc=max(1, len(devices)))
        _log_header(run, cmd, devices)
        env = worker_env()
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        with open(run.dir / LOG_FILE, "a", encoding="utf-8") as log:  # the child keeps its own copy of the file
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def get_executor(name: str, echo=None):
    """The executor called ``name``."""
    if name == "local":
        return LocalExecutor(echo)
    if name == "slurm":
        from reprtools.study.slurm import SlurmExecutor

        return SlurmExecutor(echo)
    raise ReprtoolsError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
