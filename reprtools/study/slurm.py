"""The Slurm executor: a study's pending runs as Slurm job arrays, through submitit.

Each array task runs one run exactly as the local executor does -- ``python -m reprtools.study.worker RUN_DIR``,
its output appended to ``RUN_DIR/worker.log`` -- inside a submitit job whose callable is :class:`RunTask`.
What submitit does is used as is (sbatch scripts, arrays with ``%parallelism``, the ``USR2`` signal before the time
limit, requeueing a :class:`submitit.helpers.Checkpointable`); what it does not do is here, by hand:

* **arrays split at the cluster's ``MaxArraySize``** (``scontrol show config``; Slurm's default 1001): submitit
  submits one array of any length, which Slurm refuses past that size;
* **a checkpoint before the requeue, and a cap on requeues, counted in the run directory**
  (``RUN_DIR/slurm-requeues.json``): on a time-out or pre-emption :meth:`RunTask.checkpoint` sends the worker
  SIGTERM, on which its training writes a Trainer checkpoint at the end of the current step and exits
  (:class:`reprtools.trainer.CheckpointOnSignal`; under torchrun every process does), waits for it (at most
  :data:`STOP_GRACE_S`, then SIGKILL) and requeues the task, which resumes training from that checkpoint; Slurm's
  signal comes :func:`signal_delay_s` before the time limit, enough for both.  Past ``max_requeues`` it marks the
  run's unfinished step failed, with a one-line error, instead of looping (``--retry-failed`` runs it again);
* **an offline check before submitting**: every model and data set the runs need must resolve on this machine
  without network, since compute nodes often have none (the cache is assumed shared with the nodes); the jobs then
  run with ``HF_HUB_OFFLINE=1``.  Resolving a built-in model here also builds it in the cache once, before the jobs
  start (and :func:`reprtools.models._materialise` holds a file lock, so concurrent jobs never convert twice);
* **waiting**: :meth:`SlurmExecutor.submit` waits until every task has ended (submitit's result file written, or
  gone from ``squeue`` without one: killed or cancelled; ``sacct`` is not asked, as accounting is often off),
  calling ``after_run`` as each ends, so ``results.csv`` grows as the study runs.  Ctrl-C stops the waiting, not
  the jobs.

Per-run resources come from the study file's ``[resources]`` (gpus, cpus, mem, time, partition) and its per-model
``[resources.models."NAME"]`` tables: the runs are submitted in groups of equal resources (:func:`resource_groups`),
each group as its own arrays (split at ``MaxArraySize`` per group); a run of more than one GPU trains under torchrun
inside its job, one process per GPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from reprtools.errors import ReprtoolsError

try:  # submitit is a dependency; a broken install still lets the local executor run
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover
    Checkpointable = object

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize: array indices 0..1000
DEFAULT_PARALLELISM = 64  # array tasks of one array running at once
DEFAULT_MAX_REQUEUES = 3
REQUEUE_FILE = "slurm-requeues.json"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
STOP_GRACE_S = 120  # how long checkpoint() waits for the worker to save and exit before SIGKILL
_LOST_POLLS = 3  # polls a task may be missing from squeue without a result before it counts as ended


# ----------------------------------------------------------------------------------------------- requeues
def requeue_count(run_dir: Path) -> int:
    """How many times the run's Slurm task was requeued since it was submitted."""
    path = Path(run_dir) / REQUEUE_FILE
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["requeues"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def set_requeue_count(run_dir: Path, count: int) -> None:
    from reprtools.fileio import write_json

    write_json(Path(run_dir) / REQUEUE_FILE, {"requeues": int(count)})


def mark_failed(run_dir: Path, error: str) -> str | None:
    """Record ``error`` as the failure of the run's first step that is not done (train, eval, probe); returns that
    step, or ``None`` when every step is done.  The manifest has the fields :func:`reprtools.study.steps.run_step`
    writes, so ``--status`` shows the error and ``--retry-failed`` retries the step."""
    import reprtools
    from reprtools.fileio import write_json
    from reprtools.study.plan import JOB_FILE
    from reprtools.study.steps import DONE, FAILED, PROBE, EVAL, TRAIN, read_manifest, step_name, step_status

    job = json.loads((Path(run_dir) / JOB_FILE).read_text(encoding="utf-8"))
    for step in (TRAIN, EVAL, PROBE):
        if step != TRAIN and job.get(step) is None:
            continue
        key = job["key"] if step == TRAIN else job[step]["key"]
        if step_status(Path(run_dir), step, key) == DONE:
            continue
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        old = read_manifest(Path(run_dir), step_name(step, key)) or {}
        write_json(Path(run_dir) / f"{step_name(step, key)}.json",
                   {"step": step, "key": key, "status": FAILED, "error": error,
                    "started": old.get("started") or now, "finished": now, "wall_time_s": None,
                    "reprtools_version": reprtools.__version__})
        return step
    return None


class RunTask(Checkpointable):
    """One array task: the worker for one run directory (the same command as the local executor).

    On a time-out or pre-emption submitit calls :meth:`checkpoint`, which stops the worker and returns this task
    to be requeued (training then resumes from its Trainer checkpoint), or, past ``max_requeues``, marks the run
    failed and returns ``None`` (no requeue)."""

    def __init__(self, run_dir, retry_failed: bool = False, max_requeues: int = DEFAULT_MAX_REQUEUES,
                 nproc: int = 1):
        self.run_dir = str(run_dir)
        self.retry_failed = retry_failed
        self.max_requeues = max_requeues
        self.nproc = nproc  # training processes (torchrun when more than one: one per GPU of the job)
        self._proc = None

    def __getstate__(self):  # the worker process is not part of what is requeued
        return {k: v for k, v in self.__dict__.items() if k not in ("_proc", "_checkpointing")}

    def __setstate__(self, state):
        self.__dict__.update({"nproc": 1, **state, "_proc": None})

    def __call__(self) -> int:
        from reprtools.study.executors import LOG_FILE, worker_command, worker_env

        run_dir = Path(self.run_dir)
        cmd = worker_command(run_dir, self.retry_failed, self.nproc)
        env = {**worker_env(), **OFFLINE_ENV}
        with open(run_dir / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(f"--- {datetime.now(timezone.utc).isoformat(timespec='seconds')} slurm job "
                      f"{os.environ.get('SLURM_JOB_ID', '?')} (requeues {requeue_count(run_dir)}) {' '.join(cmd)}\n")
            log.flush()
            # the worker ignores submitit's USR2 (sent before the time limit): checkpoint() stops it instead
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
            code = self._proc.wait()
        from reprtools.trainer import STOPPED_EXIT_CODE  # only now: it imports transformers (seconds)

        if code == STOPPED_EXIT_CODE and not getattr(self, "_checkpointing", False):
            # the worker was signalled directly (a pre-emption's SIGTERM reaches every process of the job) and has
            # saved its checkpoint: give submitit's USR2, which follows, the time to requeue this task
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline:
                time.sleep(1.0)
        return code

    def _stop_worker(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the worker (its training checkpoints and exits), SIGKILL it after ``grace_s``.  Reaped with
        ``os.waitpid``, not ``Popen.wait``:
        this runs in submitit's signal handler, which interrupted ``Popen.wait`` in :meth:`__call__`, and that
        holds the lock ``Popen.wait`` would block on forever."""
        proc = self._proc
        if proc is None:
            return
        deadline = time.monotonic() + grace_s
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                return
            while sig == signal.SIGKILL or time.monotonic() < deadline:
                try:
                    if os.waitpid(proc.pid, os.WNOHANG)[0]:
                        return
                except ChildProcessError:
                    return
                time.sleep(0.2)

    def checkpoint(self, *args, **kwargs):
        """Stop the worker once its training has saved a checkpoint; requeue this task (counted in the run
        directory) unless the cap is reached, in which case the run's unfinished step is marked failed and ``None``
        tells submitit not to requeue."""
        if getattr(self, "_checkpointing", False):  # a second signal while the first is handled: requeue, counted once
            return super().checkpoint(*args, **kwargs)
        self._checkpointing = True
        self._stop_worker()
        run_dir = Path(self.run_dir)
        count = requeue_count(run_dir)
        if count >= self.max_requeues:
            mark_failed(run_dir, f"stopped by Slurm (time limit or pre-emption) {count + 1} times, the cap is "
                                 f"{self.max_requeues} requeues: raise [resources] time in the study file, then "
                                 f"run it again with --retry-failed")
            return None
        set_requeue_count(run_dir, count + 1)
        return super().checkpoint(*args, **kwargs)


# ------------------------------------------------------------------------------------------------ cluster
def _slurm_command(cmd: list[str], timeout: float = 30.0) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReprtoolsError(f"--executor slurm: {cmd[0]} failed ({type(exc).__name__}: {exc}); is Slurm "
                             f"reachable from here?") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise ReprtoolsError(f"--executor slurm: {' '.join(cmd)} failed: {first}")
    return done.stdout


def check_slurm() -> None:
    """Slurm's commands are on PATH and the controller answers."""
    for tool in ("sbatch", "squeue", "scontrol"):
        if shutil.which(tool) is None:
            raise ReprtoolsError(f"--executor slurm needs Slurm: {tool} is not on PATH (run the study on the "
                                 f"cluster's login node, or bring up a local one: bash scripts/slurm_local.sh up)")
    out = _slurm_command(["scontrol", "ping"])
    if "UP" not in out:
        raise ReprtoolsError(f"--executor slurm: the Slurm controller does not answer ({out.strip() or 'no reply'})")


def parse_max_array_size(config_text: str) -> int:
    """``MaxArraySize`` from ``scontrol show config`` output (Slurm's default 1001 where absent)."""
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", config_text, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


def max_array_size() -> int:
    return parse_max_array_size(_slurm_command(["scontrol", "show", "config"]))


def array_chunks(items: list, size: int) -> list[list]:
    """``items`` in consecutive chunks of at most ``size``: arrays Slurm accepts (indices below MaxArraySize)."""
    if size < 1:
        raise ReprtoolsError(f"MaxArraySize is {size}: this cluster accepts no job arrays")
    return [items[i:i + size] for i in range(0, len(items), size)]


def time_minutes(text: str) -> int:
    """A Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``) in whole
    minutes, rounded up."""
    value = str(text).strip()
    days, _, rest = value.rpartition("-") if "-" in value else ("0", "", value)
    parts = rest.split(":")
    if not (days.isdigit() and parts and all(p.isdigit() for p in parts) and len(parts) <= 3):
        raise ReprtoolsError(f"resources.time {text!r} is not a Slurm time limit (HH:MM:SS, D-HH:MM:SS or minutes)")
    nums = [int(p) for p in parts]
    if "-" in value:  # D-HH[:MM[:SS]]
        h, m, s = (nums + [0, 0])[:3]
    else:  # MM, MM:SS or HH:MM:SS
        h, m, s = (0, nums[0], 0) if len(nums) == 1 else (0, *nums) if len(nums) == 2 else nums
    seconds = ((int(days) * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ReprtoolsError(f"resources.time {text!r} must be positive")
    return -(-seconds // 60)


def signal_delay_s(minutes: int) -> int:
    """How long before the time limit Slurm sends submitit's USR2: :data:`STOP_GRACE_S` for the worker's checkpoint
    plus a minute for the requeue (submitit's default, 90 s, is less than the wait), at most half the limit."""
    return max(1, min(STOP_GRACE_S + 60, minutes * 30))


def slurm_parameters(resources, parallelism: int) -> dict:
    """submitit ``SlurmExecutor`` parameters for one run from the study's ``[resources]``."""
    minutes = time_minutes(resources.time)
    params = {"time": minutes, "cpus_per_task": int(resources.cpus), "mem": str(resources.mem),
              "nodes": 1, "ntasks_per_node": 1, "array_parallelism": int(parallelism),
              "signal_delay_s": signal_delay_s(minutes)}
    if resources.gpus:
        params["gpus_per_node"] = int(resources.gpus)
    if resources.partition:
        params["partition"] = resources.partition
    return params


def resource_groups(plan, runs) -> list[tuple[object, list]]:
    """``runs`` grouped by their resources (each run's model's, :func:`reprtools.study.spec.resources_for`):
    ``[(resources, [run, ...]), ...]`` in the order each group first appears, runs in their order; one submitit
    executor (one set of sbatch parameters) per group."""
    groups: dict = {}
    for run in runs:
        groups.setdefault(run.resources, []).append(run)
    return list(groups.items())


# ----------------------------------------------------------------------------------------------- offline
class _offline:
    """``HF_HUB_OFFLINE=1`` (and the datasets / transformers switches) for the duration of a ``with``."""

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
        os.environ.update(OFFLINE_ENV)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_offline(plan, runs) -> None:
    """Every model and data set ``runs`` need resolves on this machine without network (one line naming the first
    that does not).  Built-in models are built in the cache here, once, before any job starts."""
    from reprtools.data import load_examples, load_parallel
    from reprtools.models import resolve_model
    from reprtools.study.spec import BASE_LANG, expand_langs

    hint = ("compute nodes often have no network, so every job must find it in the shared cache; run once on a "
            "machine with network to fill the cache, or give a local path")
    with _offline():
        for model in dict.fromkeys(run.model for run in runs):
            try:
                resolved = resolve_model(model)
            except ReprtoolsError as exc:
                raise ReprtoolsError(f"--executor slurm: model {model} does not resolve offline ({exc}); "
                                     f"{hint}") from None
            if resolved.path is None:
                raise ReprtoolsError(f"--executor slurm: model {model} is not in the local hub cache; {hint}")
        for data in dict.fromkeys(run.data for run in runs):
            _check_data(lambda d=data: load_examples(d), f"data {data}", hint)
        probes = {}
        for run in runs:
            if run.probe is not None:
                options = run.probe["options"]
                langs = probes.setdefault((options["data"], options["max_sentences"]), {BASE_LANG})
                langs.update(expand_langs(options["langs"], run.targets))
        for (data, most), langs in probes.items():
            _check_data(lambda d=data, l=sorted(langs), m=most: load_parallel(d, l, m), f"probe data {data}", hint)


def _check_data(load, what: str, hint: str) -> None:
    try:
        load()
    except ReprtoolsError as exc:
        raise ReprtoolsError(f"--executor slurm: {what} does not load offline ({exc}); {hint}") from None


# ---------------------------------------------------------------------------------------------- executor
class SlurmExecutor:
    """Runs as Slurm job arrays through submitit; ``submit`` waits for them (see the module docstring).

    ``parallelism`` caps the tasks of one array running at once (``--array=0-N%P``; each chunk of a split
    array has its own cap); ``max_requeues`` caps requeues per run; both fall back to ``[resources]``
    ``array_parallelism`` / ``max_requeues`` where the study file has them, then to the defaults here.
    ``max_array_size`` overrides the cluster's ``MaxArraySize`` (tests)."""

    name = "slurm"

    def __init__(self, echo=None, parallelism: int | None = None, max_requeues: int | None = None,
                 max_array_size: int | None = None, poll_s: float = 30.0):
        self.echo = echo or (lambda msg: None)
        self.parallelism = parallelism
        self.max_requeues = max_requeues
        self.max_array_size = max_array_size
        self.poll_s = poll_s

    def _setting(self, plan, name: str, default: int) -> int:
        value = getattr(self, name)
        if value is None:
            value = getattr(plan.spec.resources, {"parallelism": "array_parallelism"}.get(name, name), None)
        return int(default if value is None else value)

    def _executor(self, plan, resources, parallelism: int):
        """A submitit executor for the runs of one group, with that group's resources."""
        import submitit

        from reprtools.study.executors import worker_env

        folder = Path(plan.dir) / "slurm" / "%j"
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=self._setting(
            plan, "max_requeues", DEFAULT_MAX_REQUEUES))
        pythonpath = worker_env()["PYTHONPATH"]
        executor.update_parameters(job_name=f"reprtools-{plan.spec.name}", stderr_to_stdout=True,
                                   setup=[f"export PYTHONPATH={_quote(pythonpath)}"],
                                   **slurm_parameters(resources, parallelism))
        return executor

    def submit(self, plan, runs, retry_failed: bool = False, after_run=None) -> dict[str, int]:
        """Submit ``runs`` as job arrays, one set per group of equal resources, wait for every task to end,
        calling ``after_run(run)`` as each ends; returns each run's worker exit code (1 for a task that failed,
        was cancelled or not requeued)."""
        if not runs:
            return {}
        check_slurm()
        check_offline(plan, runs)
        parallelism = self._setting(plan, "parallelism", DEFAULT_PARALLELISM)
        cap = self._setting(plan, "max_requeues", DEFAULT_MAX_REQUEUES)
        size = self.max_array_size or max_array_size()
        jobs, groups = [], resource_groups(plan, runs)
        for resources, group in groups:  # every group's time limit is checked before any job is submitted
            try:
                time_minutes(resources.time)
            except ReprtoolsError as exc:
                models = ", ".join(dict.fromkeys(run.model for run in group))
                raise ReprtoolsError(f"{exc} (the runs of {models})") from None
        for resources, group in groups:
            executor = self._executor(plan, resources, parallelism)
            nproc = max(1, int(resources.gpus or 0))  # one training process per GPU of the job
            for chunk in array_chunks(group, size):
                for run in chunk:
                    set_requeue_count(run.dir, 0)
                with executor.batch():
                    submitted = [executor.submit(RunTask(run.dir, retry_failed, cap, nproc)) for run in chunk]
                jobs += list(zip(submitted, chunk))
        arrays = sorted({str(job.job_id).split("_")[0] for job, _ in jobs}, key=int)
        self.echo(f"slurm: {len(runs)} run{'s' if len(runs) > 1 else ''} submitted as job"
                  f"{'s' if len(arrays) > 1 else ''} {', '.join(arrays)} (at most {parallelism} tasks of an array at "
                  f"once, {cap} requeues each); "
                  f"waiting for them (Ctrl-C stops waiting, not the jobs; logs in {Path(plan.dir) / 'slurm'})")
        return self._wait(jobs, after_run)

    def _wait(self, jobs, after_run) -> dict[str, int]:
        codes: dict[str, int] = {}
        missing: dict[str, int] = {}
        pending, wait = list(jobs), 1.0
        try:
            while pending:
                live = _live_job_ids([job.job_id for job, _ in pending])
                still = []
                for job, run in pending:
                    if not job.paths.result_pickle.exists():  # not job.done(): it asks sacct, often off
                        gone = live is not None and str(job.job_id) not in live
                        missing[job.job_id] = missing.get(job.job_id, 0) + 1 if gone else 0
                        if missing[job.job_id] < _LOST_POLLS:
                            still.append((job, run))
                            continue
                    codes[run.key] = _exit_code(job)
                    self.echo(f"slurm: job {job.job_id} ({run.key}) ended, worker exit {codes[run.key]} "
                              f"({len(codes)}/{len(jobs)})")
                    if after_run is not None:
                        after_run(run)
                pending = still
                if pending:  # 1 s at first, then slower, up to poll_s
                    time.sleep(wait)
                    wait = min(self.poll_s, wait * 1.5)
        except KeyboardInterrupt:
            ids = sorted({str(job.job_id).split("_")[0] for job, _ in pending})
            raise ReprtoolsError(f"stopped waiting; jobs {' '.join(ids)} keep running (scancel {' '.join(ids)} "
                                 f"stops them); --status shows progress and --collect rebuilds results.csv") from None
        return codes


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _live_job_ids(job_ids) -> set[str] | None:
    """The ids (``ARRAY_TASK`` for array tasks) among ``job_ids`` that Slurm still knows (pending, running,
    requeued); ``None`` when squeue cannot say."""
    arrays = sorted({str(j).split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # squeue fails with "Invalid job id" once every listed job has left the queue
        return set() if "Invalid job id" in out.stderr else None
    return {line.strip() for line in out.stdout.splitlines() if line.strip()}


def _exit_code(job) -> int:
    """The worker's exit code the task returned; 1 for a task that raised, was not requeued or left no result."""
    try:
        if not job.paths.result_pickle.exists():
            return 1
        result = job.result()
    except Exception:  # noqa: BLE001 - submitit re-raises whatever ended the task
        return 1
    return int(result) if isinstance(result, int) else 1
