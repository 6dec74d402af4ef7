"""The local executor on a machine with GPUs (given as fake ids on this CPU machine): runs at once, each worker with
its own CUDA_VISIBLE_DEVICES, waiting for free GPUs; a run of two GPUs trains under torchrun (two gloo processes
here), and a SIGTERM to its worker leaves a checkpoint from which the next attempt resumes."""

import json
import signal
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest

from reprtools.study import executors
from reprtools.study.executors import LOG_FILE, LocalExecutor, visible_gpus, worker_command, worker_env
from reprtools.study.plan import make_plan, write_jobs
from reprtools.study.spec import Resources, read_spec
from reprtools.study.steps import DONE, INTERRUPTED, read_manifest, run_status
from reprtools.trainer import STOPPED_EXIT_CODE
from study_files import TINY_SPEC, write_study

FAKE_WORKER = """
import json, os, sys, time
start = time.time()
time.sleep(float(sys.argv[2]))
with open(os.path.join(sys.argv[1], "fake.json"), "w") as f:
    json.dump({"start": start, "end": time.time(), "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"),
               "argv": sys.argv[3:]}, f)
"""


def _fake_plan(tmp_path, n, gpus):
    runs = [SimpleNamespace(key=f"r{i}", dir=tmp_path / f"r{i}", model="m", task="t", method="lora", targets=("sw",),
                            ratio=0.5, seed=i, resources=Resources(gpus=gpus)) for i in range(n)]
    return SimpleNamespace(spec=SimpleNamespace(resources=Resources(gpus=gpus))), runs


@pytest.fixture
def fake_worker(monkeypatch):
    """Workers that sleep, then record when they ran, the GPUs they saw and their arguments."""
    def command(run_dir, retry_failed=False, nproc=1):
        return [sys.executable, "-c", FAKE_WORKER, str(run_dir), "1.5", *worker_command(run_dir, retry_failed,
                                                                                         nproc)[4:]]
    monkeypatch.setattr(executors, "worker_command", command)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def _ran(run):
    return json.loads((run.dir / "fake.json").read_text())


def test_one_run_per_gpu_at_once(tmp_path, fake_worker):
    plan, runs = _fake_plan(tmp_path, 3, gpus=1)
    ended = []
    codes = LocalExecutor(gpus=["0", "1"]).submit(plan, runs, after_run=lambda run: ended.append(run.key))
    assert codes == {"r0": 0, "r1": 0, "r2": 0} and sorted(ended) == ["r0", "r1", "r2"]
    first, second, third = (_ran(r) for r in runs)
    assert first["start"] < second["end"] and second["start"] < first["end"]  # the first two overlap
    assert {first["cvd"], second["cvd"]} == {"0", "1"}  # each on its own GPU
    assert third["start"] >= min(first["end"], second["end"])  # the third waits for a free GPU
    assert third["cvd"] in ("0", "1") and all(_ran(r)["argv"] == [] for r in runs)  # one GPU: no torchrun
    assert "CUDA_VISIBLE_DEVICES=" in (runs[0].dir / LOG_FILE).read_text()


def test_a_run_of_two_gpus_takes_both_and_trains_in_two_processes(tmp_path, fake_worker):
    plan, runs = _fake_plan(tmp_path, 2, gpus=2)
    assert LocalExecutor(gpus=["0", "1"]).submit(plan, runs) == {"r0": 0, "r1": 0}
    first, second = (_ran(r) for r in runs)
    assert first["cvd"] == second["cvd"] == "0,1" and first["argv"] == second["argv"] == ["--nproc", "2"]
    assert second["start"] >= first["end"]  # no GPU left for the second until the first ends


def test_without_gpus_runs_go_one_at_a_time_as_they_are(tmp_path, fake_worker):
    plan, runs = _fake_plan(tmp_path, 2, gpus=1)
    assert LocalExecutor(gpus=[]).submit(plan, runs) == {"r0": 0, "r1": 0}
    first, second = (_ran(r) for r in runs)
    assert second["start"] >= first["end"] and first["cvd"] is None and first["argv"] == []


def test_each_run_takes_its_models_gpus(tmp_path, fake_worker):
    """An 8B run of two GPUs and 3B runs of one share three GPUs: the first two start at once on disjoint GPUs,
    the 8B one under torchrun; the third waits for a free GPU."""
    plan, runs = _fake_plan(tmp_path, 3, gpus=1)
    for run, (model, gpus) in zip(runs, [("big-8b", 2), ("small-3b", 1), ("small-3b", 1)]):
        run.model, run.resources = model, Resources(gpus=gpus)
    assert LocalExecutor(gpus=["0", "1", "2"]).submit(plan, runs) == {"r0": 0, "r1": 0, "r2": 0}
    big, small, third = (_ran(r) for r in runs)
    assert big["cvd"] in ("0,1", "1,2", "0,2") and big["argv"] == ["--nproc", "2"]
    assert small["cvd"] not in big["cvd"].split(",") and small["argv"] == []
    assert big["start"] < small["end"] and small["start"] < big["end"]  # side by side
    assert third["start"] >= min(big["end"], small["end"]) and third["argv"] == [] and len(third["cvd"]) == 1


def test_a_run_of_no_gpus_waits_for_the_whole_machine(tmp_path, fake_worker):
    plan, runs = _fake_plan(tmp_path, 2, gpus=1)
    runs[1].resources = Resources(gpus=0)
    assert LocalExecutor(gpus=["0", "1"]).submit(plan, runs) == {"r0": 0, "r1": 0}
    first, second = (_ran(r) for r in runs)
    assert first["cvd"] in ("0", "1") and second["cvd"] is None and second["start"] >= first["end"]


def test_visible_gpus_come_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


# ------------------------------------------------------------------------------- torchrun, for real (gloo)
ONE_RUN = (TINY_SPEC.replace("ratios = [0, 0.5]", "ratios = [0.5]")
           .replace("max_steps = 2", "max_steps = 12\nsave_steps = 1000")
           .replace("limit = 4", "enabled = false").replace('data = "demo"', "enabled = false")
           .replace('langs = ["en", "target"]\nmax_sentences = 5\n', "")
           + "\n[resources]\ngpus = 2\n")


def _one_gpu() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() < 2


@pytest.mark.skipif(_one_gpu(), reason="GPU ids 0,1 are fake on a CPU machine; with one real GPU, id 1 does not exist")
def test_two_gpu_run_trains_under_torchrun_and_resumes_after_sigterm(tmp_path, monkeypatch):
    """The worker of a two-GPU run, signalled mid-training, leaves torchrun's checkpoint and exits 75; the local
    executor then finishes it data-parallel from that checkpoint (the manifest says two processes, gloo)."""
    monkeypatch.setenv("REPRTOOLS_CACHE", str(tmp_path / "cache"))
    plan = make_plan(read_spec(write_study(tmp_path, ONE_RUN)))
    write_jobs(plan)
    (run,) = plan.runs
    env = {**worker_env(), "CUDA_VISIBLE_DEVICES": "0,1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([*worker_command(run.dir, nproc=2), "--progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(200, proc.kill)
    timer.start()
    lines = []
    for line in proc.stdout:  # rank 0 prints one {'loss': ...} line per step
        lines.append(line)
        if sum("'loss'" in seen for seen in lines) == 2:
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    code = proc.wait()
    timer.cancel()
    log = "".join(lines)
    assert code == STOPPED_EXIT_CODE, log[-4000:]
    assert "CUDA_VISIBLE_DEVICES=0,1, 2 training processes" in log
    checkpoints = list((run.dir / "train" / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1 and 2 <= int(checkpoints[0].name.split("-")[1]) < 12, log[-4000:]
    assert "stopped by SIGTERM, checkpoint at step" in log
    assert run_status(run.dir, run.job())["train"] == INTERRUPTED

    codes = LocalExecutor(gpus=["0", "1"]).submit(plan, [run])
    log = (run.dir / LOG_FILE).read_text()
    assert codes == {run.key: 0}, log[-4000:]
    manifest = json.loads((run.dir / "train" / "run.json").read_text())
    assert manifest["training"]["world_size"] == 2
    assert manifest["hardware"]["backend"] == ("nccl" if manifest["hardware"]["device_type"] == "cuda" else "gloo")
    assert manifest["training"]["steps_done"] == 12 and manifest["training"]["resumed_from"].endswith(
        checkpoints[0].name)
    assert [row["step"] for row in manifest["loss_curve"]] == list(range(1, 13))
    train = read_manifest(run.dir, "train")
    assert train["status"] == DONE and train["resumed"] and train["processes"] == 2
    assert "CUDA_VISIBLE_DEVICES=0,1" in log.split("\n--- ")[-1]
