"""``python -m reprtools.study.worker RUN_DIR [--retry-failed] [--progress]``: run what is left of one study run
(:func:`reprtools.study.steps.run_job`) in a process of its own, so a crash, an out-of-memory kill or a time limit
ends this run only.  Exit status 0 when every step is done (the shared base step may be running in another
worker), 1 when one failed or waits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprtools.study.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--retry-failed", action="store_true")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    from reprtools.study.steps import BASE, DONE, OFF, RUNNING, run_job

    status = run_job(Path(args.run_dir), retry_failed=args.retry_failed, progress=args.progress)
    print(f"reprtools: {Path(args.run_dir).name}: " + ", ".join(f"{k} {v}" for k, v in status.items()),
          file=sys.stderr, flush=True)
    ok = all(v in (DONE, OFF) or (k == BASE and v == RUNNING) for k, v in status.items())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
