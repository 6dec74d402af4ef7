"""``reprtools study``: a whole method x language x ratio x seed grid from one TOML file, resumable.

* :mod:`~reprtools.study.spec` reads and checks the file; :mod:`~reprtools.study.plan` turns it into cells, runs
  and step keys; :mod:`~reprtools.study.steps` runs one run's train -> eval -> probe with their manifests, in a
  worker process (:mod:`~reprtools.study.worker`) started by an executor (:mod:`~reprtools.study.executors`);
  :mod:`~reprtools.study.collect` rebuilds ``results.csv`` and the status from the runs' files.
"""

from __future__ import annotations


def run_study(path, executor: str = "local", retry_failed: bool = False, echo=None, shard: str | None = None):
    """Read the study file at ``path``, write the runs' jobs and run what is not done with ``executor`` (only
    shard ``"I/N"``'s runs when given), rebuilding ``results.csv`` as each run ends and once at the end.
    Returns ``(plan, worker exit codes, results path)``."""
    from reprtools.study.collect import write_collected
    from reprtools.study.executors import get_executor
    from reprtools.study.plan import make_plan, parse_shard, shard_runs, write_jobs
    from reprtools.study.spec import read_spec
    from reprtools.study.steps import DONE, FAILED, OFF, run_status

    chosen = get_executor(executor, echo)
    part = parse_shard(shard)
    plan = make_plan(read_spec(path))
    write_jobs(plan)
    skip = {DONE, OFF} if retry_failed else {DONE, OFF, FAILED}
    todo = [run for run in shard_runs(plan.runs, part)
            if not all(s in skip for s in run_status(run.dir, run.job()).values())]
    codes = chosen.submit(plan, todo, retry_failed=retry_failed, after_run=lambda run: write_collected(plan))
    results_path, _ = write_collected(plan)
    return plan, codes, results_path
