"""The Slurm executor: the tiny study through a real single-node Slurm (scripts/slurm_local.sh; skipped with the
reason where it cannot start) gives the local executor's results; and, with no Slurm, the requeue cap, the array
split at MaxArraySize, the time limits, the offline check and the cache lock."""

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from reprtools.errors import ReprtoolsError
from reprtools.study import run_study
from reprtools.study.plan import make_plan, write_jobs
from reprtools.study.slurm import (
    REQUEUE_FILE, STOP_GRACE_S, RunTask, SlurmExecutor, array_chunks, check_offline, parse_max_array_size,
    requeue_count, set_requeue_count, signal_delay_s, slurm_parameters, time_minutes,
)
from reprtools.study.spec import read_spec
from reprtools.study.steps import DONE, FAILED, read_manifest, run_status
from study_files import TINY_SPEC, write_study

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_local.sh"

SPEC = TINY_SPEC.replace('name = "tiny"', 'name = "tiny-slurm"') + """
[resources]
gpus = 0
cpus = 1
mem = "2G"
time = "00:10:00"
"""


def _study(root: Path, text: str = SPEC) -> Path:
    """A study folder with very short XNLI items in en and sw."""
    return write_study(root, text)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    os.environ["REPRTOOLS_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")


# ------------------------------------------------------------------------------------------ no Slurm needed
def _plan(root: Path, text: str = SPEC):
    plan = make_plan(read_spec(_study(root, text)))
    write_jobs(plan)
    return plan


def test_past_the_requeue_cap_the_run_fails_instead_of_looping(tmp_path):
    run = _plan(tmp_path).runs[0]
    task = RunTask(run.dir, max_requeues=2)
    again = task.checkpoint()  # below the cap: requeued, counted in the run directory
    assert again is not None and again.function is task and requeue_count(run.dir) == 1
    set_requeue_count(run.dir, 2)  # two requeues already: the cap
    assert RunTask(run.dir, max_requeues=2).checkpoint() is None  # the next job's task: submitit does not requeue
    manifest = read_manifest(run.dir, "train")
    assert manifest["status"] == FAILED and "\n" not in manifest["error"]
    assert "3 times" in manifest["error"] and "cap is 2" in manifest["error"] and "--retry-failed" in manifest["error"]
    assert run_status(run.dir, run.job())["train"] == FAILED
    assert json.loads((run.dir / REQUEUE_FILE).read_text())["requeues"] == 2


def test_the_requeued_callable_carries_no_process(tmp_path):
    import pickle

    run = _plan(tmp_path).runs[0]
    task = RunTask(run.dir, retry_failed=True, max_requeues=5)
    task._proc = object()  # a running worker is not pickled into the requeued job
    copy = pickle.loads(pickle.dumps(task))
    assert copy._proc is None and copy.run_dir == str(run.dir) and copy.retry_failed and copy.max_requeues == 5


_SIGNALLED = """
import json, os, signal, sys, threading, time
import reprtools.study.executors as executors
executors.worker_command = lambda run_dir, retry_failed=False, nproc=1: json.loads(sys.argv[2])  # a fake worker
from reprtools.study.slurm import RunTask
task = RunTask(sys.argv[1], max_requeues=3)
def handler(signum, frame):  # what submitit's handler does first: call checkpoint()
    print("requeue" if task.checkpoint() is not None else "no requeue", task._proc.pid, flush=True)
    os._exit(0)
signal.signal(signal.SIGUSR2, handler)
threading.Timer(float(sys.argv[3]), os.kill, (os.getpid(), signal.SIGUSR2)).start()  # Slurm's USR2
print("returned", task(), flush=True)
"""
# a worker whose training takes 2 s to write its checkpoint after SIGTERM, then exits as a stopped training does
_SAVING = ["bash", "-c", "trap 'sleep 2; touch \"$0\"; exit 75' TERM; while :; do sleep 0.1; done"]


def _signalled(tmp_path, worker, usr2_after_s):
    import sys

    (tmp_path / "run").mkdir()
    done = subprocess.run([sys.executable, "-c", _SIGNALLED, str(tmp_path / "run"), json.dumps(worker),
                           str(usr2_after_s)], capture_output=True, text=True, timeout=60)
    word, pid = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    return word, int(pid)


def test_a_signal_during_the_run_stops_the_worker_and_requeues(tmp_path):
    """checkpoint() runs in a signal handler that interrupted Popen.wait: it must stop the worker (which
    ignores USR2) without waiting on Popen's lock, and requeue."""
    word, pid = _signalled(tmp_path, ["sleep", "120"], 1.0)  # a worker that never ends
    assert word == "requeue" and requeue_count(tmp_path / "run") == 1
    assert not Path(f"/proc/{pid}").exists()  # the worker is gone (reaped)


def test_the_requeue_waits_for_the_workers_checkpoint(tmp_path):
    """SIGTERM, then the worker's checkpoint, then the requeue: not a kill while it saves."""
    saved = tmp_path / "saved"
    word, pid = _signalled(tmp_path, [*_SAVING, str(saved)], 1.0)
    assert word == "requeue" and saved.is_file() and requeue_count(tmp_path / "run") == 1


def test_a_worker_stopped_by_the_jobs_own_sigterm_still_gets_requeued(tmp_path):
    """A pre-emption sends SIGTERM to every process of the job, then submitit's USR2: the worker saves and exits
    75 first, and the task waits for the USR2 that requeues it instead of ending as if done."""
    word, _ = _signalled(tmp_path, ["bash", "-c", "sleep 1; exit 75"], 3.0)
    assert word == "requeue" and requeue_count(tmp_path / "run") == 1


def test_arrays_are_split_at_max_array_size():
    assert parse_max_array_size("AuthType = auth/munge\nMaxArraySize            = 1001\nMaxJobCount = 10000\n") == 1001
    assert parse_max_array_size("nothing here") == 1001  # Slurm's default
    items = list(range(2503))
    chunks = array_chunks(items, 1001)
    assert [len(c) for c in chunks] == [1001, 1001, 501] and sum(chunks, []) == items
    assert array_chunks([1, 2], 5) == [[1, 2]]
    with pytest.raises(ReprtoolsError):
        array_chunks(items, 0)


@pytest.mark.parametrize("text, minutes", [("00:10:00", 10), ("04:00:00", 240), ("90", 90), ("1:30", 2),
                                           ("1-00:00:00", 1440), ("2-3", 51 * 60), ("00:00:01", 1)])
def test_slurm_time_limits_in_minutes(text, minutes):
    assert time_minutes(text) == minutes


def test_usr2_comes_early_enough_for_the_checkpoint_and_the_requeue():
    """submitit's default (90 s before the limit) is less than the wait for the worker's checkpoint; the signal
    comes STOP_GRACE_S + 60 s before it, or at half a short limit."""
    assert signal_delay_s(240) == STOP_GRACE_S + 60 and signal_delay_s(2) == 60
    params = slurm_parameters(SimpleNamespace(time="00:10:00", cpus=1, mem="2G", gpus=2, partition=""), 4)
    assert params["signal_delay_s"] == STOP_GRACE_S + 60 and params["gpus_per_node"] == 2


@pytest.mark.parametrize("text", ["", "ten", "1:2:3:4", "00:00:00", "-5"])
def test_bad_time_limits_are_refused_in_one_line(text):
    with pytest.raises(ReprtoolsError, match="resources.time"):
        time_minutes(text)


def test_offline_check_names_what_is_missing(tmp_path):
    plan = _plan(tmp_path, SPEC.replace('models = ["tiny-llama"]', 'models = ["no-such-org/no-such-model"]'))
    with pytest.raises(ReprtoolsError, match=r"model no-such-org/no-such-model does not resolve offline") as info:
        check_offline(plan, plan.runs)
    assert "\n" not in str(info.value)
    plan = _plan(tmp_path / "hub", SPEC.replace('data = "xnli:xnli"', 'data = "hf:xnli"'))
    with pytest.raises(ReprtoolsError, match=r"data hf:xnli does not load offline"):
        check_offline(plan, plan.runs)
    check_offline(*(lambda p: (p, p.runs))(_plan(tmp_path / "ok")))  # tiny model, local data: fine


def test_model_conversion_in_the_cache_happens_once(tmp_path):
    from reprtools.models import _materialise

    builds = []

    def build(out):
        builds.append(out)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")

    threads = [threading.Thread(target=_materialise, args=(tmp_path / "m", build)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and (tmp_path / "m" / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# ------------------------------------------------------------------------------------------------ real Slurm
@pytest.fixture(scope="session")
def slurm():
    """A single-node Slurm from scripts/slurm_local.sh (left running if it was up before); skips with the reason."""
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root (scripts/slurm_local.sh starts munged, slurmctld and slurmd)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("Slurm is not installed and apt-get is unavailable to install it")
    was_up = shutil.which("scontrol") is not None and subprocess.run(
        ["scontrol", "ping"], capture_output=True, text=True,
        env={**os.environ, "SLURM_CONF": "/tmp/reprtools-slurm/slurm.conf"}).stdout.count("is UP") > 0
    started = time.time()
    try:
        done = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "SLURM_LOCAL_TIMEOUT": "60"})
    except subprocess.TimeoutExpired:
        pytest.skip("scripts/slurm_local.sh up did not finish within 600 s")
    if done.returncode != 0:
        pytest.skip("a local Slurm did not come up: " + (done.stderr.strip().splitlines() or ["no message"])[-1])
    conf = done.stdout.strip().splitlines()[-1].split("=", 1)[1]
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    print(f"local Slurm up in {time.time() - started:.1f} s")
    yield conf
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
    if not was_up:
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, timeout=120)


def _cells(path: Path, plan) -> pd.DataFrame:
    """results.csv without the step keys and with run keys named by the run's place in the plan: the keys hold
    the data's absolute path, which differs between the two study folders."""
    df = pd.read_csv(path, keep_default_na=False).drop(columns=["step_key"])
    df = df.replace({run.key: f"run{i}" for i, run in enumerate(plan.runs)})
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_tiny_study_through_slurm_matches_the_local_executor(slurm, tmp_path):
    local_plan, local_codes, local_csv = run_study(_study(tmp_path / "local"), "local")
    messages = []
    started = time.time()
    plan, codes, csv = run_study(_study(tmp_path / "slurm"), "slurm", echo=messages.append)
    wall = time.time() - started
    print(f"tiny study through Slurm: {wall:.1f} s wall")
    assert codes == {run.key: 0 for run in plan.runs}
    assert local_codes == {run.key: 0 for run in local_plan.runs}
    for run in plan.runs:
        status = run_status(run.dir, run.job())
        assert status["train"] == status["eval"] == status["probe"] == DONE and set(status.values()) == {DONE}
        assert "slurm job" in (run.dir / "worker.log").read_text()  # the same worker, started by a Slurm task
        assert requeue_count(run.dir) == 0
    assert any("submitted as job" in m for m in messages)
    rows = pd.read_csv(csv, keep_default_na=False)
    assert set(rows["run_key"]) - {""} == {r.key for r in plan.runs}  # every run has rows (base rows: no run)
    slurm_rows, local_rows = _cells(csv, plan), _cells(local_csv, local_plan)
    assert len(slurm_rows) > 0
    # same settings, same keys, same numbers: only where the files are differs (nothing in results.csv)
    pd.testing.assert_frame_equal(slurm_rows, local_rows)
    assert run_study(plan.spec.path, "slurm")[1] == {}  # nothing left to do: nothing submitted


def test_slurm_executor_refuses_without_slurm(tmp_path, monkeypatch):
    plan = _plan(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ReprtoolsError, match="--executor slurm needs Slurm: sbatch is not on PATH"):
        SlurmExecutor().submit(plan, plan.runs)


class _FakeSubmitit:
    """submitit.SlurmExecutor as far as SlurmExecutor.submit uses it: records each executor's parameters and the
    arrays (batches) submitted through it; job ids count up as Slurm's would."""

    made: list = []
    next_id = [100]

    def __init__(self, folder, max_num_timeout):
        self.params, self.arrays = {}, []
        _FakeSubmitit.made.append(self)

    def update_parameters(self, **params):
        self.params.update(params)

    def batch(self):
        import contextlib

        self.arrays.append([])
        return contextlib.nullcontext()

    def submit(self, task):
        self.arrays[-1].append(task)
        array = _FakeSubmitit.next_id[0] + len(_FakeSubmitit.made) * 10 + len(self.arrays)
        return SimpleNamespace(job_id=f"{array}_{len(self.arrays[-1]) - 1}")


@pytest.fixture
def fake_submitit(monkeypatch):
    """submitit's SlurmExecutor replaced by :class:`_FakeSubmitit` (records what is made), no cluster checks."""
    import submitit

    from reprtools.study import slurm

    _FakeSubmitit.made = []
    monkeypatch.setattr(submitit, "SlurmExecutor", _FakeSubmitit)
    monkeypatch.setattr(slurm, "check_slurm", lambda: None)
    monkeypatch.setattr(slurm, "check_offline", lambda plan, runs: None)
    return _FakeSubmitit


def test_runs_are_submitted_in_groups_of_their_models_resources(tmp_path, monkeypatch, fake_submitit):
    """Two models with different [resources]: one executor (one set of sbatch parameters) per model, each with
    its own arrays split at MaxArraySize, torchrun's process count from the group's GPUs."""
    from reprtools.study import slurm

    text = (SPEC.replace('models = ["tiny-llama"]', 'models = ["tiny-llama", "tiny-qwen"]')
            .replace("seeds = [0]", "seeds = [0, 1, 2]")
            + '[resources.models."tiny-qwen"]\ngpus = 2\nmem = "8G"\ntime = "01:00:00"\n')
    plan = _plan(tmp_path, text)
    executor = SlurmExecutor(max_array_size=4)
    monkeypatch.setattr(executor, "_wait", lambda jobs, after_run: {run.key: 0 for _, run in jobs})
    codes = executor.submit(plan, plan.runs)
    assert set(codes) == {run.key for run in plan.runs}

    llama, qwen = _FakeSubmitit.made  # the file's order
    assert (llama.params["mem"], llama.params["time"], llama.params["cpus_per_task"]) == ("2G", 10, 1)
    assert "gpus_per_node" not in llama.params  # gpus = 0 in [resources]
    assert (qwen.params["mem"], qwen.params["time"], qwen.params["gpus_per_node"]) == ("8G", 60, 2)
    per_model = {m: [str(r.dir) for r in plan.runs if r.model == m] for m in ("tiny-llama", "tiny-qwen")}
    for fake, model in ((llama, "tiny-llama"), (qwen, "tiny-qwen")):
        assert [len(a) for a in fake.arrays] == [4, 2]  # 6 runs per model (3 seeds x ratios 0, 0.5): split at 4
        assert [t.run_dir for a in fake.arrays for t in a] == per_model[model]
    assert {t.nproc for a in llama.arrays for t in a} == {1} and {t.nproc for a in qwen.arrays for t in a} == {2}
    assert [len(g) for _, g in slurm.resource_groups(plan, plan.runs)] == [6, 6]


def test_a_bad_per_model_time_limit_is_refused_before_anything_is_submitted(tmp_path, fake_submitit):
    text = (SPEC.replace('models = ["tiny-llama"]', 'models = ["tiny-llama", "tiny-qwen"]')
            + '[resources.models."tiny-qwen"]\ntime = "ten"\n')
    plan = _plan(tmp_path, text)
    with pytest.raises(ReprtoolsError, match=r"resources.time 'ten' .*\(the runs of tiny-qwen\)"):
        SlurmExecutor(max_array_size=4).submit(plan, plan.runs)
    assert _FakeSubmitit.made == []
