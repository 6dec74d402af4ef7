"""``STUDY_DIR/results.csv`` and the per-cell status, rebuilt from the runs' own files at any time.

``results.csv`` is every finished eval step's ``scores.csv`` and probe step's ``metrics.csv`` (the results schema of
:mod:`reprtools.results`), one copy per cell the run serves, with the cell's settings in the schema's run columns
(``model``, ``method``, ``target_lang``, ``ratio``, ``seed``) and these columns after the schema's:

* ``study_task`` -- the task of the study file (``task`` itself is the eval task, empty on probe rows);
* ``run_key`` -- the training key (the run's directory), ``step`` -- ``eval``, ``base`` or ``probe``, ``step_key``.

The checkpoint is named by its run key.  A ratio-0 run serves every target language of its task: each of its cells
gets the eval rows of its own language and English (its own language's role is ``transfer``) and all its probe rows.
The base model's scores come from the base steps (one per model, task and eval settings), once per step, with
``model`` and ``study_task`` filled (so a study of several models can tell whose base they are) and no run settings
(``run_key``, ``target_lang``, ``ratio``, ``seed`` empty).  A half-finished study gives the rows of what is done.
"""

from __future__ import annotations

from pathlib import Path

from reprtools.study.plan import Plan, Run
from reprtools.study.steps import BASE, DONE, EVAL, PROBE, base_dir, run_status, step_name, step_status

RESULTS_FILE = "results.csv"
STUDY_COLUMNS = ("study_task", "run_key", "step", "step_key")
_STEP_FILES = {EVAL: "scores.csv", PROBE: "metrics.csv"}


def _step_rows(run: Run, step: str):
    from reprtools import results

    job = run.job()
    if job.get(step) is None or run_status(run.dir, job)[step] != DONE:
        return None
    path = run.dir / step_name(step, job[step]["key"]) / _STEP_FILES[step]
    if not path.is_file():
        return None
    df = results.read_results(path)
    for col in ("checkpoint", "reference"):
        df[col] = df[col].where(df[col] != "train", run.key)
    df["run_key"], df["step"], df["step_key"] = run.key, step, job[step]["key"]
    return df


def _cell_rows(cell, step: str, df):
    """The rows of one cell from its run's step frame ``df``; base rows (an eval written before the base was
    scored on its own) are left out: the base step gives them."""
    out = df[df["checkpoint"] != "base"].copy()
    if step == EVAL:
        out = out[out["lang"].isin([cell.lang, "en"])].copy()
        out.loc[out["lang"] == cell.lang, "role"] = "transfer"
    out["model"] = cell.model
    out["method"] = cell.method
    out["target_lang"] = cell.lang
    out["ratio"] = cell.ratio
    out["seed"] = cell.seed
    out["study_task"] = cell.task
    return out


def _base_rows(plan: Plan) -> list:
    """The base model's rows of every finished base step, once each, with the model and study task filled."""
    from reprtools import results

    frames, seen = [], set()
    for run in plan.runs:
        if run.base is None or run.base["key"] in seen:
            continue
        seen.add(run.base["key"])
        where = base_dir(run.dir, run.base["key"])
        path = where / EVAL / _STEP_FILES[EVAL]
        if step_status(where, BASE, run.base["key"]) != DONE or not path.is_file():
            continue
        df = results.read_results(path)
        df = df[df["checkpoint"] == "base"].copy()
        df["model"], df["study_task"] = run.model, run.task
        df["run_key"], df["step"], df["step_key"] = "", BASE, run.base["key"]
        frames.append(df)
    return frames


def collect(plan: Plan):
    """The study's results frame (schema columns, then :data:`STUDY_COLUMNS`); empty when nothing is done."""
    import pandas as pd

    from reprtools import results

    frames = _base_rows(plan)
    for run in plan.runs:
        for step in (EVAL, PROBE):
            df = _step_rows(run, step)
            if df is not None:
                frames += [_cell_rows(cell, step, df) for cell in run.cells]
    columns = list(results.COLUMNS) + list(STUDY_COLUMNS)
    if not frames:
        return pd.DataFrame(columns=columns)
    df = pd.concat(frames, ignore_index=True)
    return pd.concat([results.frame(df.to_dict("records")), df[list(STUDY_COLUMNS)].reset_index(drop=True)],
                     axis=1)[columns]


def write_collected(plan: Plan) -> tuple[Path, int]:
    """Rebuild ``STUDY_DIR/results.csv`` atomically; returns its path and row count."""
    from reprtools.fileio import atomic_path

    df = collect(plan)
    path = plan.dir / RESULTS_FILE
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.17g", encoding="utf-8")
    return path, len(df)


def status_rows(plan: Plan) -> list[dict]:
    """Per cell: its settings, run key and each step's status."""
    out = []
    for run in plan.runs:
        status = run_status(run.dir, run.job())
        for cell in run.cells:
            out.append({"model": cell.model, "task": cell.task, "method": cell.method, "lang": cell.lang,
                        "ratio": cell.ratio, "seed": cell.seed, "run_key": run.key, **status,
                        "error": _first_error(run)})
    return out


def _first_error(run: Run) -> str:
    from reprtools.study.steps import FAILED, read_manifest

    job = run.job()
    for step in ("train", EVAL, BASE, PROBE):
        if step != "train" and job.get(step) is None:
            continue
        key = job["key"] if step == "train" else job[step]["key"]
        where = base_dir(run.dir, key) if step == BASE else run.dir
        manifest = read_manifest(where, step_name(step, key))
        if manifest and manifest.get("status") == FAILED:
            return f"{step}: {manifest.get('error')}"
    return ""


def cell_state(row: dict) -> str:
    """A cell's one-word state: ``done`` (every step done or off), ``failed`` (a step failed), ``running`` (a
    worker is on it now), ``interrupted`` (a step was killed; it resumes on the next run) or ``pending``."""
    steps = [row["train"], row["eval"], row.get("base", "off"), row["probe"]]
    if all(s in (DONE, "off") for s in steps):
        return DONE
    for state in ("failed", "running", "interrupted"):
        if state in steps:
            return state
    return "pending"
