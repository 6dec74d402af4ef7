"""One run's steps -- train, then eval, then probe -- each with its own manifest in the run directory.

``STUDY_DIR/runs/KEY/`` holds ``job.json`` (what to do, :mod:`reprtools.study.plan`), ``train/`` (the
``reprtools train`` run directory) and ``train.json``, and for each eval or probe step ``eval-EKEY/`` and
``eval-EKEY.json`` (``probe-PKEY/...``).  A step manifest says ``step``, ``key``, ``status`` (``running`` while
it runs, then ``done`` or ``failed``), ``error`` (one line), ``started`` / ``finished`` (UTC, ISO 8601),
``wall_time_s`` and the reprtools version; it is written atomically, so a killed step leaves ``running`` behind
and counts as not done.

A step that is done is skipped; a failed one is skipped unless retried (``retry_failed``); a step whose training is
not done waits.  Training resumes from the last Trainer checkpoint when a killed run left one (``resume=True``), and
once it is done its Trainer checkpoints (and PiSSA's initial adapter) are deleted: the adapter, ``run.json`` and the
manifests are what a finished run keeps.  The probe's representations are dropped after its metrics are written unless
``keep_representations``.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from reprtools.errors import ReprtoolsError
from reprtools.fileio import write_json

TRAIN, EVAL, PROBE = "train", "eval", "probe"
DONE, FAILED, RUNNING, PENDING, WAITING, OFF = "done", "failed", "running", "pending", "waiting", "off"
INTERRUPTED = "interrupted"


def step_name(step: str, key: str) -> str:
    """The file stem of a step in its run directory: ``train``, ``eval-KEY``, ``probe-KEY``."""
    return TRAIN if step == TRAIN else f"{step}-{key}"


def read_manifest(run_dir: Path, name: str) -> dict | None:
    path = run_dir / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None  # cannot happen through write_json; a hand-edited file counts as not run


def step_status(run_dir: Path, step: str, key: str) -> str:
    """``done``, ``failed``, ``running`` (started, not finished: running now or killed) or ``pending``."""
    manifest = read_manifest(run_dir, step_name(step, key))
    if manifest is None or manifest.get("key") != key:
        return PENDING
    return manifest.get("status", PENDING)


def run_status(run_dir: Path, job: dict) -> dict[str, str]:
    """Each step's status; eval and probe are ``waiting`` while training is not done, ``off`` when disabled, and
    a step left ``running`` by a worker that no longer holds the run's lock is ``interrupted`` (it resumes)."""
    live = RUNNING if is_locked(run_dir) else INTERRUPTED
    train = step_status(run_dir, TRAIN, job["key"])
    out = {TRAIN: live if train == RUNNING else train}
    for step in (EVAL, PROBE):
        if job.get(step) is None:
            out[step] = OFF
        else:
            status = step_status(run_dir, step, job[step]["key"])
            status = live if status == RUNNING else status
            out[step] = WAITING if train != DONE and status == PENDING else status
    return out


LOCK_FILE = ".lock"


@contextmanager
def run_lock(run_dir: Path):
    """Hold the run's lock (``flock`` on ``RUN_DIR/.lock``) while its worker runs; yields ``False`` when another
    process holds it, so the same run is never worked on twice at once."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_locked(run_dir: Path) -> bool:
    """Whether a worker holds the run's lock now."""
    import fcntl

    if not (run_dir / LOCK_FILE).is_file():
        return False
    with open(run_dir / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write(run_dir: Path, name: str, manifest: dict) -> None:
    write_json(run_dir / f"{name}.json", manifest)


def error_line(exc: BaseException) -> str:
    """One line for the manifest: a ReprtoolsError's own message, else the exception type and its first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ReprtoolsError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_step(run_dir: Path, step: str, key: str, action) -> str:
    """Run ``action()`` as step ``step`` with manifest ``key``: ``running`` first, then ``done`` or ``failed``
    with the error line (the traceback goes to stderr, the worker's log).  Returns the final status."""
    import reprtools

    name = step_name(step, key)
    manifest = {"step": step, "key": key, "status": RUNNING, "error": None, "started": _now(), "finished": None,
                "wall_time_s": None, "reprtools_version": reprtools.__version__}
    _write(run_dir, name, manifest)
    started = time.time()
    try:
        info = action() or {}
        manifest.update(status=DONE, **info)
    except Exception as exc:  # a failed step is recorded and the study goes on
        traceback.print_exc()
        manifest.update(status=FAILED, error=error_line(exc))
    manifest.update(finished=_now(), wall_time_s=round(time.time() - started, 3))
    _write(run_dir, name, manifest)
    return manifest["status"]


# -------------------------------------------------------------------------------------------------- steps
def train_dir(run_dir: Path) -> Path:
    return run_dir / TRAIN


def do_train(run_dir: Path, job: dict, progress: bool = False) -> dict:
    """Train the run's adapter into ``train/``: a fresh run, a resumed one (a killed run left a Trainer
    checkpoint) or, when a failed attempt left files but no checkpoint, a fresh one over them.  A directory
    that already holds ``run.json`` is a finished run (killed before its manifest was written)."""
    from reprtools.run_manifest import CHECKPOINT_DIR, PISSA_INIT_DIR
    from reprtools.train import TrainOptions, run_state, train

    out = train_dir(run_dir)
    state = run_state(out)
    resumed = False
    if state != "finished":
        checkpoints = out / CHECKPOINT_DIR
        resumed = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
        train(TrainOptions(output_dir=str(out), resume=resumed, overwrite=state == "partial" and not resumed,
                           progress=progress, **job["train"]))
    for name in (CHECKPOINT_DIR, PISSA_INIT_DIR):  # a finished run keeps its adapter, not what made it
        shutil.rmtree(out / name, ignore_errors=True)
    return {"resumed": resumed, "output": TRAIN}


def do_eval(run_dir: Path, job: dict, progress: bool = False) -> dict:
    """``reprtools eval`` of the trained run on the job's languages into ``eval-KEY/``.  ``format`` is passed
    only where the installed :class:`~reprtools.evaluate.EvalOptions` has it."""
    from dataclasses import fields

    from reprtools.evaluate import EvalOptions, evaluate

    step = job[EVAL]
    out = run_dir / step_name(EVAL, step["key"])
    extra = {"format": step["format"]} if "format" in {f.name for f in fields(EvalOptions)} else {}
    evaluate(EvalOptions(checkpoints=[str(train_dir(run_dir))], output_dir=str(out), progress=progress,
                         **step["options"], **extra))
    return {"output": out.name}


def do_probe(run_dir: Path, job: dict, progress: bool = False) -> dict:
    """``reprtools probe`` of the trained run (no figures) into ``probe-KEY/``; its representations are deleted
    once ``metrics.csv`` is written unless the job keeps them."""
    from reprtools.probe import ProbeOptions, probe

    step = job[PROBE]
    out = run_dir / step_name(PROBE, step["key"])
    probe(ProbeOptions(checkpoints=[str(train_dir(run_dir))], output_dir=str(out), figures=False,
                       progress=progress, **step["options"]))
    if not job.get("keep_representations"):
        shutil.rmtree(out / "representations", ignore_errors=True)
    return {"output": out.name}


ACTIONS = {TRAIN: do_train, EVAL: do_eval, PROBE: do_probe}


def run_job(run_dir: Path, retry_failed: bool = False, progress: bool = False) -> dict[str, str]:
    """Run what is left of the run in ``run_dir`` (see the module docstring); returns each step's status."""
    from reprtools.study.plan import JOB_FILE

    job = json.loads((run_dir / JOB_FILE).read_text(encoding="utf-8"))
    with run_lock(run_dir) as held:
        if held:
            _run_steps(run_dir, job, retry_failed, progress)
    return run_status(run_dir, job)


def _run_steps(run_dir: Path, job: dict, retry_failed: bool, progress: bool) -> None:
    for step in (TRAIN, EVAL, PROBE):
        if job.get(step) is None and step != TRAIN:
            continue
        key = job["key"] if step == TRAIN else job[step]["key"]
        status = step_status(run_dir, step, key)
        if status == DONE or (status == FAILED and not retry_failed):
            continue
        if step != TRAIN and step_status(run_dir, TRAIN, job["key"]) != DONE:
            continue  # waits for its adapter
        run_step(run_dir, step, key, lambda a=ACTIONS[step]: a(run_dir, job, progress))
