"""One run's steps -- train, then eval, then probe -- each with its own manifest in the run directory.

``STUDY_DIR/runs/KEY/`` holds ``job.json`` (what to do, :mod:`reprtools.study.plan`), ``train/`` (the
``reprtools train`` run directory) and ``train.json``, and for each eval or probe step ``eval-EKEY/`` and
``eval-EKEY.json`` (``probe-PKEY/...``).  A step manifest says ``step``, ``key``, ``status`` (``running`` while
it runs, then ``done`` or ``failed``), ``error`` (one line), ``started`` / ``finished`` (UTC, ISO 8601),
``wall_time_s`` and the reprtools version; it is written atomically, so a killed step leaves ``running`` behind
and counts as not done.

The base model is scored by a step shared between runs, ``STUDY_DIR/base/BKEY/`` (``base.json`` and ``eval/``): the
first worker of a run of that model and task whose training is done scores it under that folder's lock (the runs'
own evals pass ``base=False``); see :func:`do_base`.

A step that is done is skipped; a failed one is skipped unless retried (``retry_failed``); a step whose training is
not done waits.  With ``nproc`` > 1 (a run given several GPUs) training runs data-parallel under ``torchrun`` (one
process per GPU, :func:`train_under_torchrun`); eval and probe stay in one process.  A training stopped by SIGTERM
or SIGUSR1 (a Slurm time limit, pre-emption) writes a Trainer checkpoint first
(:class:`reprtools.trainer.CheckpointOnSignal`) and raises :class:`~reprtools.trainer.TrainingStopped`, which no
step records as failed: its manifest stays ``running`` (``interrupted`` once the worker is gone) and the next
attempt resumes.  Training resumes from the last Trainer checkpoint when a killed run left one (``resume=True``), and
once it is done its Trainer checkpoints (and PiSSA's initial adapter) are deleted: the adapter, ``run.json`` and the
manifests are what a finished run keeps.  The probe's representations are dropped after its metrics are written unless
``keep_representations`` (``True``: kept as captured, float32; ``"float16"``: converted to half precision, half the
disk).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from reprtools.errors import ReprtoolsError
from reprtools.fileio import write_json

TRAIN, EVAL, BASE, PROBE = "train", "eval", "base", "probe"
BASE_DIR = "base"  # STUDY_DIR/base/BKEY: the base model's eval, shared by the runs of one model and task
DONE, FAILED, RUNNING, PENDING, WAITING, OFF = "done", "failed", "running", "pending", "waiting", "off"
INTERRUPTED = "interrupted"


def step_name(step: str, key: str) -> str:
    """The file stem of a step in its directory: ``train``, ``eval-KEY``, ``probe-KEY``; ``base`` (in its own
    directory, ``base/KEY/``)."""
    return step if step in (TRAIN, BASE) else f"{step}-{key}"


def base_dir(run_dir: Path, key: str) -> Path:
    """The base step's directory for a run in ``STUDY_DIR/runs/RKEY``: ``STUDY_DIR/base/KEY``."""
    return Path(run_dir).parent.parent / BASE_DIR / key


def _step_dir(run_dir: Path, job: dict, step: str) -> Path:
    return base_dir(run_dir, job[BASE]["key"]) if step == BASE else run_dir


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
    for step in (EVAL, BASE, PROBE):
        if job.get(step) is None:
            out[step] = OFF
            continue
        where = _step_dir(run_dir, job, step)
        status = step_status(where, step, job[step]["key"])
        if status == RUNNING:
            status = live if where == run_dir else (RUNNING if is_locked(where) else INTERRUPTED)
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


def train_options(run_dir: Path, job: dict, resume: bool, overwrite: bool, progress: bool = False):
    """The run's :class:`~reprtools.train.TrainOptions`, writing into ``train/``."""
    from reprtools.train import TrainOptions

    return TrainOptions(output_dir=str(train_dir(run_dir)), resume=resume, overwrite=overwrite, progress=progress,
                        **job["train"])


def do_train(run_dir: Path, job: dict, progress: bool = False, nproc: int = 1) -> dict:
    """Train the run's adapter into ``train/``: a fresh run, a resumed one (a killed run left a Trainer
    checkpoint) or, when a failed attempt left files but no checkpoint, a fresh one over them.  A directory
    that already holds ``run.json`` is a finished run (killed before its manifest was written).  ``nproc`` > 1:
    data-parallel under torchrun (:func:`train_under_torchrun`)."""
    from reprtools.run_manifest import CHECKPOINT_DIR, PISSA_INIT_DIR
    from reprtools.train import run_state, train

    out = train_dir(run_dir)
    state = run_state(out)
    resumed = False
    if state != "finished":
        checkpoints = out / CHECKPOINT_DIR
        resumed = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
        overwrite = state == "partial" and not resumed
        if nproc > 1:
            train_under_torchrun(run_dir, nproc, resumed, overwrite, progress)
        else:
            train(train_options(run_dir, job, resumed, overwrite, progress))
    for name in (CHECKPOINT_DIR, PISSA_INIT_DIR):  # a finished run keeps its adapter, not what made it
        shutil.rmtree(out / name, ignore_errors=True)
    return {"resumed": resumed, "output": TRAIN, "processes": max(1, nproc)}


#: seconds torchrun gives its processes to checkpoint and exit after a signal before it kills them; below the
#: Slurm task's own wait for the worker (:data:`reprtools.study.slurm.STOP_GRACE_S`)
TORCHRUN_GRACE_S = 100


def torchrun_command(run_dir: Path, nproc: int, resume: bool, overwrite: bool, progress: bool = False) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m reprtools.study.worker RUN_DIR
    --train-only ...``: every process trains the run's options (``train`` sets up the process group itself)."""
    flags = [f for f, on in (("--resume", resume), ("--overwrite", overwrite), ("--progress", progress)) if on]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "reprtools.study.worker", str(run_dir), "--train-only", *flags]


def train_under_torchrun(run_dir: Path, nproc: int, resume: bool, overwrite: bool, progress: bool = False) -> None:
    """Train the run in ``nproc`` processes through torchrun (its output goes where this process's does: the
    worker's log).  SIGTERM or SIGUSR1 to this process is passed on as SIGTERM to torchrun's processes, not to
    torchrun: each writes its share of the checkpoint and exits, torchrun then ends, and this raises
    :class:`~reprtools.trainer.TrainingStopped` as a one-process training would.  Not to torchrun, because a
    pre-emption signals every process of a Slurm job: torchrun then gets its own SIGTERM (and gives its processes
    :data:`TORCHRUN_GRACE_S` before SIGKILL), and a second one would cut that wait short."""
    import psutil
    from transformers.trainer_utils import get_last_checkpoint

    from reprtools.run_manifest import CHECKPOINT_DIR
    from reprtools.trainer import STOP_SIGNALS, TrainingStopped

    env = {**os.environ, "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(TORCHRUN_GRACE_S)}
    proc = subprocess.Popen(torchrun_command(run_dir, nproc, resume, overwrite, progress), env=env)
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        try:
            targets = psutil.Process(proc.pid).children() or [psutil.Process(proc.pid)]  # none yet: torchrun
        except psutil.NoSuchProcess:
            return
        for target in targets:
            try:
                target.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass

    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS} if main else {}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code == 0:
        return
    if received:
        checkpoints = train_dir(run_dir) / CHECKPOINT_DIR
        last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        step = int(Path(last).name.split("-")[-1]) if last else 0  # get_last_checkpoint's names: checkpoint-STEP
        raise TrainingStopped(step, last, signal.Signals(received[0]).name)
    raise ReprtoolsError(f"training under torchrun ({nproc} processes) exited with status {code}; its output is "
                         f"in {run_dir.name}/worker.log")


def do_eval(run_dir: Path, job: dict, progress: bool = False) -> dict:
    """``reprtools eval`` of the trained run on the job's languages into ``eval-KEY/``, without the base model
    (``base=False``: the base step scores it once for every run of the model and task)."""
    from reprtools.evaluate import EvalOptions, evaluate

    step = job[EVAL]
    out = run_dir / step_name(EVAL, step["key"])
    evaluate(EvalOptions(checkpoints=[str(train_dir(run_dir))], output_dir=str(out), progress=progress, base=False,
                         format=step["format"], **step["options"]))
    return {"output": out.name}


def do_base(run_dir: Path, job: dict, progress: bool = False) -> dict:
    """``reprtools eval`` of the base model into ``STUDY_DIR/base/KEY/eval/``, with the options of the runs' evals
    it serves (:mod:`reprtools.study.plan`).  ``evaluate`` finds the base model through a checkpoint, so this run's adapter is
    scored beside it and then dropped: ``scores.csv`` and ``items/`` keep the base only (its ``eval.json`` still
    names the adapter it was loaded with, and the manifest's ``scored_with`` says which run's).  The bootstrap
    indices depend only on the number of items, the count and the seed, so the base's intervals are paired with
    every run's."""
    from reprtools import results
    from reprtools.evaluate import EvalOptions, evaluate

    step = job[BASE]
    out = base_dir(run_dir, step["key"]) / EVAL
    res = evaluate(EvalOptions(checkpoints=[str(train_dir(run_dir))], output_dir=str(out), progress=progress,
                               base=True, format=step["format"], **step["options"]))
    results.write_results(res.scores[res.scores["checkpoint"] == "base"], res.scores_csv)
    for items in (out / "items").iterdir() if (out / "items").is_dir() else ():
        if items.name != "base":
            shutil.rmtree(items, ignore_errors=True)
    return {"output": EVAL, "scored_with": job["key"]}


def do_probe(run_dir: Path, job: dict, progress: bool = False) -> dict:
    """``reprtools probe`` of the trained run (no figures) into ``probe-KEY/``; its representations are deleted
    once ``metrics.csv`` is written unless the job keeps them (``"float16"``: kept at half precision,
    :func:`halve_representations`)."""
    from reprtools.probe import ProbeOptions, probe

    step = job[PROBE]
    out = run_dir / step_name(PROBE, step["key"])
    probe(ProbeOptions(checkpoints=[str(train_dir(run_dir))], output_dir=str(out), figures=False,
                       progress=progress, **step["options"]))
    keep = job.get("keep_representations")
    if not keep:
        shutil.rmtree(out / "representations", ignore_errors=True)
    elif keep == "float16":
        halve_representations(out / "representations")
    return {"output": out.name}


def halve_representations(rep_dir: Path) -> int:
    """Rewrite every ``NAME/LANG.safetensors`` under ``rep_dir`` with float16 tensors, atomically; returns how many.

    The metrics are computed from the float32 capture first; this only shrinks what is kept (float16 keeps about 3
    significant digits, ample for plotting or re-pooling, not for recomputing metrics to the last digit).  The
    cache key moves to ``reprtools_key_float32`` so that a later probe never takes a halved file for its float32
    capture (:func:`reprtools.representations.is_cached` reads ``reprtools_key``) and captures again instead;
    ``stored_dtype`` says ``float16``.  :func:`reprtools.representations.load_representations` reads the files
    back (as float16 arrays).  A file already halved is left as it is."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from reprtools.fileio import atomic_path

    count = 0
    for path in sorted(Path(rep_dir).glob("*/*.safetensors")):
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        if meta.get("stored_dtype") == "float16":
            continue
        tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(path)).items()}
        if "reprtools_key" in meta:
            meta["reprtools_key_float32"] = meta.pop("reprtools_key")
        meta["stored_dtype"] = "float16"
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        count += 1
    return count


ACTIONS = {TRAIN: do_train, EVAL: do_eval, BASE: do_base, PROBE: do_probe}


def run_job(run_dir: Path, retry_failed: bool = False, progress: bool = False, nproc: int = 1) -> dict[str, str]:
    """Run what is left of the run in ``run_dir`` (see the module docstring), training in ``nproc`` processes;
    returns each step's status."""
    from reprtools.study.plan import JOB_FILE

    job = json.loads((run_dir / JOB_FILE).read_text(encoding="utf-8"))
    with run_lock(run_dir) as held:
        if held:
            _run_steps(run_dir, job, retry_failed, progress, nproc)
    return run_status(run_dir, job)


def _run_steps(run_dir: Path, job: dict, retry_failed: bool, progress: bool, nproc: int = 1) -> None:
    for step in (TRAIN, EVAL, BASE, PROBE):
        if job.get(step) is None and step != TRAIN:
            continue
        if step != TRAIN and step_status(run_dir, TRAIN, job["key"]) != DONE:
            continue  # waits for its adapter
        if step == BASE:  # shared with other runs: under its own lock; another worker may be on it
            with run_lock(_step_dir(run_dir, job, BASE)) as held:
                if held:
                    _run_one(run_dir, job, BASE, retry_failed, progress)
        else:
            _run_one(run_dir, job, step, retry_failed, progress, nproc)


def _run_one(run_dir: Path, job: dict, step: str, retry_failed: bool, progress: bool, nproc: int = 1) -> None:
    key = job["key"] if step == TRAIN else job[step]["key"]
    where = _step_dir(run_dir, job, step)
    status = step_status(where, step, key)
    if status == DONE or (status == FAILED and not retry_failed):
        return
    if step == TRAIN:
        action = lambda: do_train(run_dir, job, progress, nproc)  # noqa: E731
    else:
        action = lambda a=ACTIONS[step]: a(run_dir, job, progress)  # noqa: E731
    run_step(where, step, key, action)
