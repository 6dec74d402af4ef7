"""``reprtools study``: parse the options and call :mod:`reprtools.study`."""

from __future__ import annotations

import click


def _flops(value) -> str:
    return "?" if value is None else f"{value:.2e}"


def _dry_run(plan) -> None:
    from reprtools.study.collect import cell_state, status_rows
    from reprtools.study.plan import estimate_flops

    flops = estimate_flops(plan)
    rows = status_rows(plan)
    done = sum(cell_state(r) == "done" for r in rows)
    click.echo(f"reprtools: study {plan.spec.name} in {plan.dir}: {len(plan.cells)} cells from {len(plan.runs)} "
               f"training runs (ratio 0 is trained once per model, task, method and seed)")
    _resources(plan.spec)
    click.echo("  run_key           model / task / method / langs / ratio / seed    train  eval  base  probe   FLOPs")
    for run in plan.runs:
        row = next(r for r in rows if r["run_key"] == run.key)
        what = f"{run.model} {run.task} {run.method} {'+'.join(run.targets)} {run.ratio:g} {run.seed}"
        click.echo(f"  {run.key}  {what:<44} {row['train']:<6} {row['eval']:<5} {row['base']:<5} {row['probe']:<7} "
                   f"{_flops(flops[run.key])}")
    # training compute counts only the runs still to train (a trained run with an eval or probe to do needs none)
    todo = [k for k in flops if any(r["run_key"] == k and r["train"] != "done" for r in rows)]
    known = [flops[k] for k in todo if flops[k] is not None]
    compute = (f"training compute to run about {sum(known):.2e} FLOPs (6 x parameters x tokens, padding "
               f"included: an upper bound)" if known else
               "nothing left to train" if not todo else "training compute unknown")
    missing = [m for m in plan.spec.models if any(flops[r.key] is None for r in plan.runs if r.model == m)]
    click.echo(f"reprtools: {len(rows) - done} cells to run, {done} done; {compute}"
               + (f"; no parameter count for {', '.join(missing)} (its config is not available offline)"
                  if missing else ""))


def _resources(spec) -> None:
    """The resources of each model's runs, where they differ between models."""
    from reprtools.study.spec import resources_for

    per_model = {model: resources_for(spec, model) for model in spec.models}
    if len(set(per_model.values())) < 2:
        return
    click.echo("  resources per run, by model:")
    for model, r in per_model.items():
        click.echo(f"    {model}: gpus {r.gpus}, cpus {r.cpus}, mem {r.mem}, time {r.time}"
                   + (f", partition {r.partition}" if r.partition else ""))


def _status(plan) -> None:
    from reprtools.study.collect import cell_state, status_rows

    rows = status_rows(plan)
    counts: dict[str, int] = {}
    for r in rows:
        state = cell_state(r)
        counts[state] = counts.get(state, 0) + 1
        line = (f"  {state:<11} {r['model']} {r['task']} {r['method']} {r['lang']} {r['ratio']:g} {r['seed']}  "
                f"[{r['run_key']}: train {r['train']}, eval {r['eval']}, base {r['base']}, probe {r['probe']}]")
        click.echo(line + (f"  {r['error']}" if r["error"] else ""))
    click.echo("reprtools: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


@click.command()
@click.argument("study_file")
@click.option("--executor", default="local", show_default=True, metavar="local|slurm",
              help="local: each run in its own subprocess, one after another, or on a machine with GPUs as many at "
                   "once as [resources] gpus per run allows (CUDA_VISIBLE_DEVICES each; a run of several GPUs trains "
                   "under torchrun); slurm: job arrays through submitit ([resources] of the study file, per model "
                   "where it has [resources.models.\"NAME\"]), waiting for every job; a time limit checkpoints "
                   "the training and requeues it.")
@click.option("--dry-run", is_flag=True, help="Print the plan (runs, their state, compute) and run nothing.")
@click.option("--collect", "collect_only", is_flag=True, help="Only rebuild STUDY_DIR/results.csv from the runs.")
@click.option("--status", "status_only", is_flag=True, help="Only show done / failed / running / pending per cell.")
@click.option("--retry-failed", is_flag=True, help="Run failed steps again (otherwise they are skipped).")
@click.option("--shard", default=None, metavar="I/N",
              help="Run only every N-th run from the I-th, so N processes (or machines) share the study.")
def study(study_file: str, executor: str, dry_run: bool, collect_only: bool, status_only: bool,
          retry_failed: bool, shard: str | None) -> None:
    """Run the grid a STUDY_FILE (TOML) describes: each run trains, evaluates and probes in its own directory;
    finished steps are skipped, a killed training resumes, a failed step is recorded and the rest goes on."""
    from reprtools.study import run_study
    from reprtools.study.collect import write_collected
    from reprtools.study.executors import get_executor
    from reprtools.study.plan import make_plan
    from reprtools.study.spec import read_spec

    from reprtools.study.plan import parse_shard

    get_executor(executor)
    parse_shard(shard)
    if dry_run or collect_only or status_only:
        plan = make_plan(read_spec(study_file, check_data=dry_run))
        if dry_run:
            _dry_run(plan)
        if status_only:
            _status(plan)
        if collect_only:
            path, n = write_collected(plan)
            click.echo(f"reprtools: {n} rows in {path}")
        return
    plan, codes, path = run_study(study_file, executor, retry_failed, echo=lambda m: click.echo(f"reprtools: {m}"),
                                  shard=shard)
    _status(plan)
    click.echo(f"reprtools: results in {path}")
