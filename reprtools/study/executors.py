"""Executors: how a study's runs are started.  One small interface -- ``submit(plan, runs, retry_failed,
after_run)`` returns each run's worker exit code -- so a cluster executor is a class beside :class:`LocalExecutor`.

``local`` starts each run as its own ``python -m reprtools.study.worker RUN_DIR`` subprocess, one after another;
the worker's output goes to ``RUN_DIR/worker.log`` (appended, one section per attempt).  ``slurm`` submits the same
worker command as Slurm job arrays through submitit (:mod:`reprtools.study.slurm`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

from reprtools.errors import ReprtoolsError

EXECUTORS = ("local", "slurm")
LOG_FILE = "worker.log"


def worker_command(run_dir, retry_failed: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "reprtools.study.worker", str(run_dir)]
    return cmd + (["--retry-failed"] if retry_failed else [])


def worker_env() -> dict[str, str]:
    """This process's environment, with the folder this reprtools is imported from first on ``PYTHONPATH``: the
    worker runs the same reprtools as the study, installed or not."""
    from pathlib import Path

    import reprtools

    env = dict(os.environ)
    root = str(Path(reprtools.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class LocalExecutor:
    """One run at a time, each in its own subprocess."""

    name = "local"

    def __init__(self, echo=None):
        self.echo = echo or (lambda msg: None)

    def submit(self, plan, runs, retry_failed: bool = False, after_run=None) -> dict[str, int]:
        """Run each of ``runs`` in a worker subprocess, one after another; ``after_run(run)`` is called as each
        ends (the study rebuilds ``results.csv`` there, so a long study can be analysed as it goes)."""
        codes = {}
        for i, run in enumerate(runs, 1):
            self.echo(f"run {i}/{len(runs)}: {run.key} ({run.model} {run.task} {run.method} "
                      f"{'+'.join(run.targets)} ratio {run.ratio:g} seed {run.seed})")
            run.dir.mkdir(parents=True, exist_ok=True)
            with open(run.dir / LOG_FILE, "a", encoding="utf-8") as log:
                log.write(f"--- {datetime.now(timezone.utc).isoformat(timespec='seconds')} "
                          f"{' '.join(worker_command(run.dir, retry_failed))}\n")
                log.flush()
                codes[run.key] = subprocess.call(worker_command(run.dir, retry_failed), stdout=log,
                                                 stderr=subprocess.STDOUT, env=worker_env())
            if after_run is not None:
                after_run(run)
        return codes


def get_executor(name: str, echo=None):
    """The executor called ``name``."""
    if name == "local":
        return LocalExecutor(echo)
    if name == "slurm":
        from reprtools.study.slurm import SlurmExecutor

        return SlurmExecutor(echo)
    raise ReprtoolsError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
