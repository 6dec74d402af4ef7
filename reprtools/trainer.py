"""What reprtools adds to transformers' :class:`~transformers.Trainer`: two things for AdaLoRA, one for clusters.

* :class:`AdaLoraAllocator` calls peft's ``update_and_allocate`` after every optimizer step.  Plain Trainer never
  calls it, so without it AdaLoRA silently trains as a fixed-rank LoRA.
* :class:`ReprTrainer` logs AdaLoRA's orthogonal regulariser (:func:`orthogonal_regulariser`) apart from the
  task loss.  peft folds the regulariser into ``outputs.loss``; nothing in peft or Trainer reports it alone.
* :class:`CheckpointOnSignal` turns SIGTERM / SIGUSR1 (a Slurm time limit or pre-emption) into a Trainer
  checkpoint at the next step end and a clean stop (:class:`TrainingStopped`, exit status
  :data:`STOPPED_EXIT_CODE`).  Trainer saves only every ``save_steps``; a signal would lose what came since.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from transformers import Trainer, TrainerCallback

#: exit status of a training stopped by a signal after writing its checkpoint (``EX_TEMPFAIL``: try again, with
#: ``--resume``); distinct from 1 (a crash) and 2 (bad input)
STOPPED_EXIT_CODE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def orthogonal_regulariser(peft_model, adapter_name: str = "default") -> float:
    """AdaLoRA's orthogonality penalty R(P, Q) as peft adds it to the loss (Zhang et al. 2023, eq. 4):
    the mean over the adapted factors of ||P^T P - I||_F and ||Q Q^T - I||_F.

    peft folds it into ``outputs.loss``; it is recomputed here (without gradients) only so that the task loss
    and the regulariser can be logged apart.
    """
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if adapter_name not in name or not ("lora_A" in name or "lora_B" in name):
                continue
            cov = p @ p.T if "lora_A" in name else p.T @ p
            total += torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)).item()
            count += 1
    return total / count if count else 0.0


class AdaLoraAllocator(TrainerCallback):
    """Calls AdaLoRA's ``update_and_allocate`` after every optimizer step, before the gradients are zeroed
    (it scores each singular value by its gradient)."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.peft_model.base_model.update_and_allocate(state.global_step)


class TrainingStopped(SystemExit):
    """Training stopped by a signal once its checkpoint at ``step`` was written (``checkpoint``); the run has no
    ``run.json`` and continues with ``--resume``.

    A :class:`SystemExit` with status :data:`STOPPED_EXIT_CODE`, not a :class:`~reprtools.errors.ReprtoolsError`:
    nothing is wrong with the input, the process was asked to end and does so (as the signal's default action
    would, only after saving), and code that records failures (``except Exception``) lets it through."""

    def __init__(self, step: int, checkpoint: str | None, signal_name: str = "signal"):
        super().__init__(STOPPED_EXIT_CODE)
        self.step, self.checkpoint, self.signal_name = step, checkpoint, signal_name

    def __str__(self) -> str:
        where = f" in {self.checkpoint}" if self.checkpoint else ""
        return (f"stopped by {self.signal_name}, checkpoint at step {self.step}{where}; resume with --resume "
                f"(exit status {STOPPED_EXIT_CODE})")


class CheckpointOnSignal(TrainerCallback):
    """On SIGTERM or SIGUSR1 during training: save a Trainer checkpoint at the next step end and stop.

    The handler only notes the signal (it runs between two bytecodes of whatever the process was doing); at the
    end of the next optimizer step the callback sets ``control.should_save`` and ``control.should_training_stop``,
    so the Trainer writes ``checkpoint-N`` into its output directory as at any ``save_steps``, then leaves its
    loop; :meth:`on_train_end` raises :class:`TrainingStopped`.  A signal at the very last step changes nothing
    (the run ends and is written as usual).  Under ``torchrun`` the launcher may signal one process only, or each
    at a different step: every process all-reduces the flag (max) at every step end, so all stop at the same step
    and take part in the same checkpoint.

    Handlers are installed only in the main thread (Python allows no other) from ``on_train_begin`` to the end of
    training, the previous ones restored after (:meth:`restore`; :class:`ReprTrainer` does it even when training
    raises); a previous Python handler is still called (chained)."""

    def __init__(self):
        self.received: int | None = None
        self.stopped_at: int | None = None
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)

    def _agreed(self, args) -> bool:
        """Whether any process received a signal (one all-reduce when running distributed)."""
        import torch
        import torch.distributed as dist

        flag = self.received is not None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            tensor = torch.tensor([int(flag)], device=args.device)
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = bool(tensor.item())
        return flag

    def on_train_begin(self, args, state, control, **kwargs):
        self.stopped_at = None
        self.install()

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_at is None and self._agreed(args) and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()
        if self.stopped_at is None:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{self.stopped_at}"
        name = signal.Signals(self.received).name if self.received is not None else "a signal (another process)"
        stopped = TrainingStopped(self.stopped_at, str(checkpoint), name)
        if state.is_world_process_zero:
            print(f"reprtools: {stopped}", file=sys.stderr, flush=True)
        raise stopped


class ReprTrainer(Trainer):
    """Trainer that logs AdaLoRA's orthogonal regulariser (``orth_reg``) and the task loss (``task_loss`` =
    ``loss - orth_reg_weight * orth_reg``) beside the total loss, averaged over the same steps as ``loss``."""

    def __init__(self, *args, orth_reg_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.orth_reg_weight = orth_reg_weight
        self._reg_sum, self._reg_n = 0.0, 0

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        if self.orth_reg_weight and model.training:
            self._reg_sum += orthogonal_regulariser(self.model)
            self._reg_n += 1
        return out

    def train(self, *args, **kwargs):
        """Trainer's ``train``; the signal handlers of :class:`CheckpointOnSignal` are restored however it ends."""
        try:
            return super().train(*args, **kwargs)
        finally:
            for callback in self.callback_handler.callbacks:
                if isinstance(callback, CheckpointOnSignal):
                    callback.restore()

    def log(self, logs, *args, **kwargs):
        if self._reg_n and "loss" in logs:
            reg = self._reg_sum / self._reg_n
            logs["orth_reg"] = reg
            logs["task_loss"] = logs["loss"] - self.orth_reg_weight * reg
            self._reg_sum, self._reg_n = 0.0, 0
        super().log(logs, *args, **kwargs)
