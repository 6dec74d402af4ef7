"""``reprtools study``: a whole method x language x ratio x seed grid from one TOML file, resumable.

* :mod:`~reprtools.study.spec` reads and checks the file; :mod:`~reprtools.study.plan` turns it into cells, runs
  and step keys; :mod:`~reprtools.study.steps` runs one run's train -> eval -> probe with their manifests, in a
  worker process (:mod:`~reprtools.study.worker`) started by an executor (:mod:`~reprtools.study.executors`);
  :mod:`~reprtools.study.collect` rebuilds ``results.csv`` and the status from the runs' files; at the end
  :func:`reprtools.stats.run.run_stats` analyses it (margin and alpha from the file's ``[stats]``).
"""

from __future__ import annotations


def run_study(path, executor: str = "local", retry_failed: bool = False, echo=None, shard: str | None = None):
    """Read the study file at ``path``, write the runs' jobs and run what is not done with ``executor`` (only
    shard ``"I/N"``'s runs when given), rebuilding ``results.csv`` as each run ends and once at the end, then
    ``reprtools stats`` on it when it has evaluation rows.  Returns ``(plan, worker exit codes, results path)``."""
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
    study_stats(plan, echo)
    return plan, codes, results_path


def study_stats(plan, echo=None):
    """``reprtools stats`` on the study's ``results.csv`` with the file's ``[stats]`` margin and alpha, when it
    holds evaluation rows; returns the :class:`~reprtools.stats.run.StatsResult`, or ``None`` when there was
    nothing to analyse or the analysis failed (said in one line through ``echo``: the study's own results stand
    and ``reprtools stats`` can be run again on them)."""
    import pandas as pd

    from reprtools import results
    from reprtools.study.collect import RESULTS_FILE

    echo = echo or (lambda msg: None)
    path = plan.dir / RESULTS_FILE
    if not path.is_file():
        return None
    rows = pd.read_csv(path, usecols=["comparison"], keep_default_na=False)
    if not (rows["comparison"] == results.EVALUATION).any():
        return None
    from reprtools.stats.run import run_stats

    try:
        result = run_stats(plan.dir, margin=plan.spec.stats.margin, alpha=plan.spec.stats.alpha)
    except Exception as exc:  # noqa: BLE001 - a failed analysis does not fail the study
        from reprtools.study.steps import error_line

        echo(f"stats failed ({error_line(exc)}); run `reprtools stats {plan.dir}` again after fixing it")
        return None
    echo(f"stats in {result.out_dir}" + (f" (verdicts: {', '.join(f'{n} {v}' for v, n in result.verdicts.items())})"
                                         if result.verdicts else ""))
    return result
