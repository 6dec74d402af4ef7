"""benchmarks/gpu_check.py in its CPU mode, as a subprocess: the one-line no-GPU notice, stage isolation (a failing
stage is reported, the others still run, the exit code is non-zero) and the capture bounds it states.  Keeps the
GPU check from rotting between the rare runs on a lent GPU machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _run(tmp_path, *args):
    out = tmp_path / "check.json"
    env = {**os.environ, "REPRTOOLS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(out), *args],
                          capture_output=True, text=True, env=env, timeout=300)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One CPU run with a real method and a bogus one: every other stage must still run."""
    return _run(tmp_path_factory.mktemp("gpu-check"), "--methods", "lora,bogus")


def _stage(report, name):
    return next(row for row in report["stages"] if row["stage"] == name)


def test_a_failing_stage_is_reported_and_the_others_still_run(smoke):
    proc, report = smoke
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert report["failed"] == ["train-tiny-bogus"]
    assert "unknown method 'bogus'" in _stage(report, "train-tiny-bogus")["error"]
    statuses = {row["stage"]: row["status"] for row in report["stages"]}
    assert statuses == {
        "environment": "ok", "train-tiny-lora": "ok", "train-tiny-bogus": "failed", "build-8b-shaped": "skipped",
        "capture-tiny": "ok", "train-8b-shaped-lora": "skipped", "probe-tiny": "ok", "eval-tiny": "ok",
        "weights-tiny": "ok", "weights-8b-shaped": "skipped", "study-tiny": "skipped",
    }
    assert "FAILED: train-tiny-bogus; total wall time" in proc.stdout


def test_without_a_gpu_it_says_so_in_one_line_first(smoke):
    proc, report = smoke
    notices = [line for line in proc.stdout.splitlines() if "no CUDA GPU here" in line]
    assert len(notices) == 1 and proc.stdout.startswith(notices[0])
    assert report["gpu"] is False and report["mode"] == "cpu-smoke"


def test_training_and_capture_numbers_are_within_the_stated_bounds(smoke):
    _, report = smoke
    lora = _stage(report, "train-tiny-lora")
    assert lora["steps"] == 2 and lora["bf16"] is False and lora["tokens"] > 0 and lora["tokens_per_s"] > 0
    cap = _stage(report, "capture-tiny")
    # padding must not leak: batch 1 and batch 16 agree to float32 rounding
    assert cap["cpu_fp32_batch1"]["max_rel"] <= 1e-4
    # bf16 keeps 8 significant bits: close to fp32, but not equal (an equal result would mean bf16 never ran)
    assert cap["cpu_bf16"]["min_cos"] >= 0.99 and 0 < cap["cpu_bf16"]["median_rel"] <= 0.03
    assert cap["capture_s"] > 0 and cap["plain_s"] > 0
    assert report["tolerances"] == {"fp32_max_rel": 1e-4, "bf16_min_cos": 0.99, "bf16_median_rel": 0.03}


def test_all_ok_exits_zero(tmp_path):
    proc, report = _run(tmp_path, "--stages", "environment")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["failed"] == [] and [row["stage"] for row in report["stages"]] == ["environment"]
    assert "all stages ok or skipped" in proc.stdout
