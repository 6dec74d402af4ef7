"""Processes and devices: what ``reprtools train`` needs to run data-parallel, and what run.json says it ran on.

Data-parallel training itself is transformers' Trainer with accelerate: building ``TrainingArguments`` under
``torchrun`` or ``accelerate launch`` (``LOCAL_RANK``/``WORLD_SIZE`` in the environment) sets up the process
group, shards each global batch over the processes and averages the gradients.  This module adds only what they
leave to the caller:

* on a machine without CUDA, accelerate sets up a (gloo) process group only when told the run is on CPU;
  otherwise every process trains alone on all the data and believes it is process zero
  (:func:`needs_cpu_backend`);
* a global batch that does not depend on the number of processes (:func:`accumulation_steps`);
* a final barrier so that the other processes exit only once the main one has written the run, and the process
  group taken down before exit (:func:`finish`);
* the hardware, for the manifest (:func:`hardware`).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from reprtools.errors import ReprtoolsError

REPORT_TO = {"none": None, "tensorboard": "tensorboard", "wandb": "wandb"}  # value -> the package it needs


def world_size_from_env() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``; 1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def needs_cpu_backend() -> bool:
    """True when several processes were launched on a machine without CUDA: ``TrainingArguments(use_cpu=True)``
    is then what makes accelerate set up a gloo process group (without it accelerate finds no GPU backend,
    reports a single process, and every process trains alone).  A single process keeps the default device
    choice (e.g. Apple's MPS)."""
    import torch

    return world_size_from_env() > 1 and not torch.cuda.is_available()


def bf16_supported() -> bool:
    """bf16 where this process's GPU has it (compute capability 8.0 or more), asked without creating a CUDA
    context: under a launcher each process uses GPU ``LOCAL_RANK``, and should not touch GPU 0 first."""
    import torch

    if not torch.cuda.is_available():
        return False
    index = int(os.environ.get("LOCAL_RANK", "0") or 0) % torch.cuda.device_count()
    return torch.cuda.get_device_capability(index)[0] >= 8


def accumulation_steps(global_batch: int, per_device: int, processes: int) -> int:
    """Gradient accumulation so that per-device batch x accumulation x processes = ``global_batch``."""
    step = per_device * processes
    if global_batch % step:
        raise ReprtoolsError(
            f"--global-batch-size {global_batch} is not divisible by --batch-size {per_device} x {processes} "
            f"process(es) = {step}; choose a global batch that is a multiple of {step}"
        )
    return global_batch // step


def check_report_to(value: str) -> str:
    """``none``, ``tensorboard`` or ``wandb``; the logger's package must be installed."""
    import importlib.util

    if value not in REPORT_TO:
        raise ReprtoolsError(f"--report-to must be one of {', '.join(REPORT_TO)}, got '{value}'")
    package = REPORT_TO[value]
    if package is not None and importlib.util.find_spec(package) is None:
        raise ReprtoolsError(f"--report-to {value} needs the {package} package: pip install {package}")
    return value


def finish(timeout_s: float | None = None) -> None:
    """Wait for every process (at most ``timeout_s`` on gloo; the process group's own timeout, 30 minutes by
    default, otherwise), then take the process group down (torch warns when a program exits without).

    On gloo the wait is ``monitored_barrier``, not ``barrier``.  Gloo's barrier keeps every collective still in
    flight when it was issued (here the Trainer's last gather) alive until it completes, and a gloo worker thread
    then frees them -- which needs the GIL to release their tensors' Python objects.  When the main thread meanwhile
    destroys the process group (the DDP reducer drops the last reference as ``train()`` returns), it waits for those
    worker threads while holding the GIL: a deadlock, seen in 2 of about 60 two-process CPU runs under load (a
    process that had finished training never exited; the stacks showed ``~ProcessGroupGloo`` against
    ``~AsyncBarrierWork`` waiting for the GIL).  ``monitored_barrier`` is point-to-point with rank 0 and holds no
    earlier work, and it names a rank that never arrives instead of hanging.  NCCL has no such worker threads and
    keeps ``barrier``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == dist.Backend.GLOO:
        from datetime import timedelta

        timeout = None if timeout_s is None else timedelta(seconds=timeout_s)
        dist.monitored_barrier(timeout=timeout, wait_all_ranks=True)
    else:
        dist.barrier()
    dist.destroy_process_group()


def hardware(args) -> dict:
    """What the run ran on: ``device`` (model name), ``device_type``, ``num_processes``, ``cuda`` (CUDA runtime
    torch was built with), ``driver`` (NVIDIA driver, where ``nvidia-smi`` is present), ``backend`` (the process
    group's) and the deterministic-algorithm settings."""
    import platform

    import torch

    device = args.device
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else _cpu_name() or platform.machine()
    backend = None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        backend = torch.distributed.get_backend()
    return {
        "device": name,
        "device_type": device.type,
        "num_processes": args.world_size,
        "cuda": torch.version.cuda if cuda else None,
        "driver": _nvidia_driver() if cuda else None,
        "backend": backend,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _nvidia_driver() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None
