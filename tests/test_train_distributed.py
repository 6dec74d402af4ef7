"""`reprtools train` in two processes on CPU (gloo), launched as users launch it: ``torchrun`` and
``accelerate launch``.  Each run must be really data-parallel: every process exits 0, only the main one writes,
the manifest counts two processes and every process's tokens, and the loss matches a single-process run with
the same global batch.

Tolerance: the Trainer averages the loss over the global batch's real tokens whether the batch is split over
processes or over accumulation steps, so the two runs differ only in the order of float32 sums; 2e-4 on a loss
of ~5-9 is ~100x what was measured (about 1e-5 after 4 steps).  Dropout is off in these comparisons: each process
draws its own dropout masks, so with dropout the two runs are equally valid but not the same.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from reprtools.train import TrainOptions, train

LOSS_ATOL = 2e-4
COMMON = ["--model", "tiny-llama", "--data", "demo", "--lang", "hi", "--ratio", "0.5", "--num-examples", "32",
          "--batch-size", "2", "--global-batch-size", "8", "--dropout", "0", "--learning-rate", "5e-3", "-q"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One model cache for the launched processes and the single-process runs of this module."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _cache(cache, monkeypatch):
    monkeypatch.setenv("REPRTOOLS_CACHE", str(cache))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _accelerate() -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port())]


def launch(launcher: list[str], *train_args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "REPRTOOLS_CACHE": str(cache), "PYTHONWARNINGS": "ignore"}
    cmd = [*launcher, "-m", "reprtools_cli.main", "train", *train_args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done


def single_process(out, method, **kw):
    """The same run in this process: per-device batch 2, so --global-batch-size 8 means 4 accumulation steps."""
    return train(TrainOptions(output_dir=str(out), model="tiny-llama", method=method, data="demo", lang="hi", ratio=0.5,
                              num_examples=32, batch_size=2, global_batch_size=8, dropout=0.0, learning_rate=5e-3,
                              progress=False, **kw)).manifest


def losses(manifest):
    return [row["loss"] for row in manifest["loss_curve"]]


def assert_one_finished_run(run, done):
    """One complete run: run.json and the adapter in place, nothing temporary left, one process reported it."""
    assert (run / "run.json").is_file() and (run / "adapter" / "adapter_config.json").is_file()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert done.stdout.count("reprtools: trained") == 1, done.stdout


@pytest.mark.parametrize("method", ["lora", "adalora", "pissa"])
def test_two_processes_train_data_parallel_like_one_with_the_same_global_batch(tmp_path, cache, method):
    run = tmp_path / "ddp"
    done = launch(TORCHRUN, "--method", method, "--max-steps", "4", "-o", str(run), *COMMON, cache=cache)
    assert_one_finished_run(run, done)
    ddp = json.loads((run / "run.json").read_text())
    one = single_process(tmp_path / "single", method, max_steps=4)

    training = ddp["training"]
    assert (training["world_size"], training["per_device_batch_size"], training["gradient_accumulation"]) == (2, 2, 2)
    assert training["global_batch_size"] == one["training"]["global_batch_size"] == 8
    assert one["training"]["gradient_accumulation"] == 4 and one["training"]["world_size"] == 1
    assert ddp["hardware"]["num_processes"] == 2 and ddp["hardware"]["backend"] == "gloo"
    # every process's real tokens are counted: the same examples, the same count as one process
    assert ddp["tokens_seen"] == one["tokens_seen"] > 0
    assert losses(ddp) == pytest.approx(losses(one), abs=LOSS_ATOL)
    if method == "adalora":  # the allocation is decided on averaged gradients, so one process's equals DDP's
        assert ddp["final_rank_per_module"] == one["final_rank_per_module"]
        assert ddp["peft_config"]["total_step"] == 4
    if method == "pissa":  # the initial adapter written once, and the conversion against it
        assert (run / "pissa_init" / "adapter_config.json").is_file()
        assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 16

    # the adapter reloads with plain peft on the original base and changes its outputs
    base = AutoModelForCausalLM.from_pretrained(ddp["base_model"]["name_or_path"]).eval()
    ids = torch.randint(4, 250, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = base(ids).logits
        after = PeftModel.from_pretrained(base, str(run / "adapter")).eval()(ids).logits
    assert torch.isfinite(after).all() and not torch.allclose(before, after, atol=1e-4)


def test_accelerate_launch_resumes_a_torchrun_run(tmp_path, cache):
    """Interrupted after its checkpoint at step 2, a two-process run continues under the other launcher and ends
    where the uninterrupted run ended."""
    run = tmp_path / "ddp"
    args = ["--method", "lora", "--max-steps", "4", "--save-steps", "2", "-o", str(run), *COMMON]
    launch(TORCHRUN, *args, cache=cache)
    whole = json.loads((run / "run.json").read_text())
    (run / "run.json").unlink()  # a crash between the checkpoints at steps 2 and 4
    for name in ("adapter", "checkpoints/checkpoint-4"):
        shutil.rmtree(run / name)

    done = launch(_accelerate(), *args, "--resume", cache=cache)
    assert_one_finished_run(run, done)
    resumed = json.loads((run / "run.json").read_text())
    assert resumed["training"]["resumed_from"] == str(run / "checkpoints" / "checkpoint-2")
    assert resumed["training"]["steps_done"] == 4 and resumed["training"]["world_size"] == 2
    assert resumed["tokens_seen"] == whole["tokens_seen"]
    assert losses(resumed) == pytest.approx(losses(whole), abs=LOSS_ATOL)
