"""The two things reprtools adds to transformers' :class:`~transformers.Trainer` for AdaLoRA.

* :class:`AdaLoraAllocator` calls peft's ``update_and_allocate`` after every optimizer step.  Plain Trainer never
  calls it, so without it AdaLoRA silently trains as a fixed-rank LoRA.
* :class:`ReprTrainer` logs AdaLoRA's orthogonal regulariser (:func:`orthogonal_regulariser`) apart from the
  task loss.  peft folds the regulariser into ``outputs.loss``; nothing in peft or Trainer reports it alone.
"""

from __future__ import annotations

from transformers import Trainer, TrainerCallback


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

    def log(self, logs, *args, **kwargs):
        if self._reg_n and "loss" in logs:
            reg = self._reg_sum / self._reg_n
            logs["orth_reg"] = reg
            logs["task_loss"] = logs["loss"] - self.orth_reg_weight * reg
            self._reg_sum, self._reg_n = 0.0, 0
        super().log(logs, *args, **kwargs)
