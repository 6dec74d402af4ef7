"""A training stopped by SIGTERM (a Slurm time limit or pre-emption) saves a Trainer checkpoint at the next step end,
exits with its own status, and ``--resume`` finishes the run from that checkpoint: `reprtools train` as a subprocess,
signalled once it has logged a few steps, with --save-steps far beyond the run so no regular checkpoint exists."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from reprtools.trainer import STOPPED_EXIT_CODE, CheckpointOnSignal

STEPS = 40
ARGS = ["train", "--model", "tiny-llama", "--data", "demo", "--lang", "hi", "--ratio", "0.5", "--num-examples", "16",
        "--batch-size", "2", "--max-steps", str(STEPS), "--save-steps", "1000"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {**os.environ, "REPRTOOLS_CACHE": str(tmp_path_factory.mktemp("cache")), "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONWARNINGS": "ignore"}


def _cli(*args):
    return [sys.executable, "-m", "reprtools_cli.main", *args]


def test_sigterm_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path, env):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(*ARGS, "-o", str(out)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    timer = threading.Timer(240, proc.kill)  # a hung run fails the test instead of blocking the suite
    timer.start()
    logged = 0
    for line in proc.stdout:  # the Trainer prints one {'loss': ...} line per step (--logging-steps 1)
        logged += "'loss'" in line
        if logged == 2:
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.read()
    err = proc.stderr.read()
    code = proc.wait()
    timer.cancel()
    assert logged == 2, err[-3000:]
    assert code == STOPPED_EXIT_CODE, err[-3000:]
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1, checkpoints
    step = int(checkpoints[0].name.split("-")[1])
    assert 2 <= step < STEPS
    assert f"stopped by SIGTERM, checkpoint at step {step}" in err and "--resume" in err
    assert not (out / "run.json").exists()  # not a finished run
    first = [row for row in json.loads((checkpoints[0] / "trainer_state.json").read_text())["log_history"]
             if "loss" in row]
    assert [row["step"] for row in first] == list(range(1, step + 1))

    done = subprocess.run(_cli(*ARGS, "-o", str(out), "--resume", "-q"), env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["training"]["steps_done"] == STEPS
    assert manifest["training"]["resumed_from"].endswith(f"checkpoint-{step}")
    curve = manifest["loss_curve"]
    # the curve continues the checkpoint's: the steps before the signal as the first attempt logged them, then on
    assert [row["step"] for row in curve] == list(range(1, STEPS + 1))
    assert [row["loss"] for row in curve[:step]] == [row["loss"] for row in first]


def test_the_handler_is_restored_after_training():
    """Outside training a signal keeps its previous action: the callback's handler lives from on_train_begin to
    restore(), and a previous Python handler is chained."""
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        callback = CheckpointOnSignal()
        callback.install()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert callback.received == signal.SIGUSR1 and seen == [signal.SIGUSR1]
        callback.restore()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert seen == [signal.SIGUSR1, signal.SIGUSR1] and signal.getsignal(signal.SIGUSR1) is not callback._handle
    finally:
        signal.signal(signal.SIGUSR1, previous)
