"""``python -m reprtools.study.worker RUN_DIR [--retry-failed] [--progress] [--nproc N]``: run what is left of one
study run (:func:`reprtools.study.steps.run_job`) in a process of its own, so a crash, an out-of-memory kill or a
time limit ends this run only.  ``--nproc N`` (N > 1) trains under torchrun in N processes, one per GPU of those
``CUDA_VISIBLE_DEVICES`` gives it.  Exit status 0 when every step is done (the shared base step may be running in
another worker), 1 when one failed or waits, :data:`reprtools.trainer.STOPPED_EXIT_CODE` when a signal stopped the
training after its checkpoint (the next attempt resumes).

``--train-only [--resume] [--overwrite]`` is what each torchrun process runs: the run's training alone, without
manifests or lock (the worker that started torchrun holds them)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprtools.study.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--retry-failed", action="store_true")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--nproc", type=int, default=1, help="training processes (torchrun when more than one)")
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overwrite", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if args.train_only:
        return _train_only(run_dir, args)

    from reprtools.study.steps import BASE, DONE, OFF, RUNNING, run_job
    from reprtools.trainer import STOPPED_EXIT_CODE, TrainingStopped

    print(f"reprtools: worker {os.getpid()} for {run_dir.name}: CUDA_VISIBLE_DEVICES="
          f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}, {max(1, args.nproc)} training process"
          f"{'es' if args.nproc > 1 else ''}", file=sys.stderr, flush=True)
    try:
        status = run_job(run_dir, retry_failed=args.retry_failed, progress=args.progress, nproc=args.nproc)
    except TrainingStopped as stopped:
        print(f"reprtools: {run_dir.name}: training {stopped}; the next attempt resumes from it", file=sys.stderr,
              flush=True)
        return STOPPED_EXIT_CODE
    print(f"reprtools: {run_dir.name}: " + ", ".join(f"{k} {v}" for k, v in status.items()),
          file=sys.stderr, flush=True)
    ok = all(v in (DONE, OFF) or (k == BASE and v == RUNNING) for k, v in status.items())
    return 0 if ok else 1


def _train_only(run_dir: Path, args) -> int:
    """One torchrun process: ``train`` with the run's options (it joins the process group itself)."""
    import json

    from reprtools.errors import ReprtoolsError
    from reprtools.study.plan import JOB_FILE
    from reprtools.study.steps import train_options
    from reprtools.train import train

    job = json.loads((run_dir / JOB_FILE).read_text(encoding="utf-8"))
    try:
        train(train_options(run_dir, job, args.resume, args.overwrite, args.progress))
    except ReprtoolsError as exc:
        print(f"reprtools: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
