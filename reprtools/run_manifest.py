"""``run.json``: what a ``reprtools train`` run directory records about how its adapter was made.

Keys (all always present; ``budget_match`` and ``saved_rank`` may be ``null``):

* ``method``, ``rank`` (after ``--match-budget``), ``saved_rank`` (PiSSA: ``2 r``), ``peft_config`` (as saved),
  ``final_rank_per_module`` (AdaLoRA: after pruning), ``trainable_params`` (peft's count), ``base_params``,
  ``trainable_percent`` (of the base), ``budget_match``, ``notes``;
* ``data``: the mix (``base_lang``, ``target_lang``, ``ratio``, ``total``, ``seed``, ``counts``, ``ids_sha256``,
  ``content_sha256``: the sorted content hash of every training example, see :mod:`reprtools.data.overlap`, by
  which ``reprtools eval`` refuses items the run trained on; absent in runs written before it was recorded),
  ``max_length`` and ``source`` (the files read, with sha256, and the split parameters: ``split``, ``holdout``
  and the split's own ``seed``);
* ``seed`` and ``seed_draws`` (what the seed draws: the data sample, its order, the adapter's initialisation and
  dropout);
* ``base_model``: ``name`` as given, ``name_or_path`` (what the adapter reloads on), ``kind``,
  ``fingerprint_sha256`` of the weight files;
* ``target_modules``: the layers that got adapters (``"all-linear"``, the study's set-up, or a list of names);
* ``training``: learning rate, ``per_device_batch_size`` (also as ``batch_size``), ``gradient_accumulation``,
  ``world_size`` (processes), ``global_batch_size`` (their product), steps planned and done, bf16, the checkpoint
  resumed from, final loss (averaged over the processes), ``report_to``;
* ``hardware``: ``device`` (GPU or CPU model), ``device_type``, ``num_processes``, ``cuda`` and ``driver``
  versions (``null`` on CPU), the process group's ``backend``, and whether deterministic algorithms were on
  (``deterministic_algorithms``, ``cudnn_deterministic``, ``cudnn_benchmark``);
* ``loss_curve`` (``step``, ``loss``, AdaLoRA's ``task_loss`` and ``orth_reg``, ``learning_rate``, ``grad_norm``,
  ``num_input_tokens_seen``), ``wall_time_s`` (this call), ``tokens_seen`` (real, non-padding tokens of the whole
  run, across resumes, summed over the processes), ``tokens_per_second`` (this call's real tokens of all
  processes / ``wall_time_s``);
* ``versions``, ``command`` and ``options`` (every ``TrainOptions`` field: ``options.lang`` and
  ``options.ratio`` are the target language and its share as given).
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict

RUN_FILE = "run.json"
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
PISSA_INIT_DIR = "pissa_init"
SEED_DRAWS = ["data sample", "data order", "adapter initialisation", "dropout"]
_CURVE_KEYS = ("step", "loss", "task_loss", "orth_reg", "learning_rate", "grad_norm", "num_input_tokens_seen")


def versions() -> dict:
    """Versions of Python, reprtools and the libraries that train."""
    import accelerate
    import peft
    import torch
    import transformers

    import reprtools

    return {
        "python": platform.python_version(),
        "reprtools": reprtools.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }


def jsonable(obj):
    """``obj`` with every value JSON can hold kept, arrays as lists, sets as lists and anything else as ``str``."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def loss_curve(log_history: list[dict]) -> list[dict]:
    """The Trainer's training-loss rows (one per ``--logging-steps``), without its end-of-training summary."""
    return [{k: v for k, v in row.items() if k in _CURVE_KEYS} for row in log_history if "loss" in row]


def build_manifest(opts, data, build, training, fitted, saved, ranks: dict[str, int]) -> dict:
    """The manifest of a finished run from the results of :mod:`reprtools.train`'s steps (see the module
    docstring for the keys)."""
    from reprtools.distributed import hardware
    from reprtools.models import fingerprint

    trainer, peft_model = training.trainer, build.model
    trainable, _ = peft_model.get_nb_trainable_parameters()
    config = peft_model.peft_config["default"].to_dict()
    config["base_model_name_or_path"] = data.resolved.reload_id
    wall = fitted.wall_time_s
    return {
        "reprtools_run": 1,
        "method": opts.method,
        "rank": build.spec.rank,
        "saved_rank": saved.saved_rank,
        "peft_config": jsonable(config),
        "final_rank_per_module": ranks,
        "trainable_params": trainable,
        "base_params": build.base_params,
        "trainable_percent": 100.0 * trainable / build.base_params,
        "budget_match": build.budget_match,
        "notes": saved.notes,
        "target_modules": jsonable(build.spec.target_modules),
        "data": {**data.mix.to_dict(), "max_length": opts.max_length, "source": data.dataset.manifest()},
        "seed": opts.seed,
        "seed_draws": SEED_DRAWS,
        "base_model": {
            "name": opts.model,
            "name_or_path": data.resolved.reload_id,
            "kind": data.resolved.kind,
            "fingerprint_sha256": fingerprint(data.resolved),
        },
        "training": _training_section(opts, trainer, training.resume_from, fitted),
        "hardware": hardware(trainer.args),
        "loss_curve": loss_curve(trainer.state.log_history),
        "wall_time_s": wall,
        "tokens_seen": fitted.tokens_seen,
        "tokens_per_second": fitted.session_tokens / wall if wall > 0 else None,
        "versions": versions(),
        "command": sys.argv,
        "options": asdict(opts),
    }


def _training_section(opts, trainer, resume_from: str | None, fitted) -> dict:
    args = trainer.args
    return {
        "learning_rate": args.learning_rate,
        "batch_size": args.per_device_train_batch_size,
        "per_device_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "max_steps": args.max_steps,
        "steps_done": trainer.state.global_step,
        "epochs": opts.epochs,
        "bf16": bool(args.bf16),
        "gradient_checkpointing": opts.gradient_checkpointing,
        "resumed_from": resume_from,
        "final_loss": fitted.result.training_loss,
        "report_to": opts.report_to,
    }
