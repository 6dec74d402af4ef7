"""``reprtools train``: one adapter, one controlled set-up, one run directory.

The run directory gets ``adapter/`` (standard PEFT files; ``PeftModel.from_pretrained(original_base, adapter/)``
reproduces the trained model) and ``run.json`` (the manifest).  Both are written under temporary names and
renamed into place at the very end, ``run.json`` last: a directory without ``run.json`` is not a finished run.
Intermediate Trainer checkpoints for ``--resume`` live in ``checkpoints/``.

Training uses transformers' :class:`~transformers.Trainer`, so the same call runs on several GPUs under
``accelerate launch`` or ``torchrun`` unchanged; bf16 is used where the GPU supports it.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import PrinterCallback, Trainer, TrainerCallback

from reprtools.adapters import (
    METHODS,
    AdapterSpec,
    adalora_schedule,
    count_all,
    count_trainable,
    default_learning_rate,
    match_rank,
    module_ranks,
    parse_budget_target,
    save_adapter,
)
from reprtools.data.mixing import target_count
from reprtools.errors import ReprtoolsError
from reprtools.fileio import write_json
from reprtools.models import DEFAULT_MODEL, fingerprint, resolve_model

RUN_FILE = "run.json"
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
PISSA_INIT_DIR = "pissa_init"
MAX_AUTO_EXAMPLES = 3000


@dataclass
class TrainOptions:
    """Everything ``reprtools train`` takes; the defaults are the study's controlled set-up."""

    output_dir: str
    model: str = DEFAULT_MODEL
    method: str = "lora"
    data: str = "demo"
    lang: str = "hi"
    ratio: float = 0.1
    num_examples: int | None = None  # None: as many as the data allows at this ratio, at most 3000
    rank: int = 8
    alpha: float = 16
    dropout: float = 0.05
    learning_rate: float | None = None  # None: the method's default (adapters.default_learning_rate)
    batch_size: int = 4
    gradient_accumulation: int = 1
    max_steps: int | None = None
    epochs: float = 1.0
    max_length: int = 256
    seed: int = 0
    gradient_checkpointing: bool = False
    match_budget: str | None = None
    pissa_niter: int = 4
    save_steps: int = 50
    logging_steps: int = 1
    overwrite: bool = False
    resume: bool = False
    progress: bool = True

    def adapter_spec(self) -> AdapterSpec:
        """The adapter these options ask for; checks the method, rank, alpha, dropout and PiSSA iterations."""
        return AdapterSpec(self.method, self.rank, self.alpha, self.dropout, pissa_niter=self.pissa_niter, seed=self.seed)

    def validate(self) -> None:
        self.adapter_spec()
        if not 0.0 <= float(self.ratio) <= 1.0:
            raise ReprtoolsError(f"--ratio must be in [0, 1] (the target language's share), got {self.ratio}")
        for name in ("batch_size", "gradient_accumulation", "max_length", "save_steps", "logging_steps"):
            if getattr(self, name) <= 0:
                raise ReprtoolsError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.num_examples is not None and self.num_examples <= 0:
            raise ReprtoolsError(f"--num-examples must be positive, got {self.num_examples}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ReprtoolsError(f"--max-steps must be positive, got {self.max_steps}")
        if self.epochs <= 0:
            raise ReprtoolsError(f"--epochs must be positive, got {self.epochs}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ReprtoolsError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.overwrite and self.resume:
            raise ReprtoolsError("--overwrite and --resume contradict each other; choose one")


def run_state(output_dir: Path) -> str:
    """``"empty"``, ``"finished"`` (has run.json) or ``"partial"`` (checkpoints or files, no run.json)."""
    if not output_dir.exists():
        return "empty"
    if not output_dir.is_dir():
        raise ReprtoolsError(f"--output-dir {output_dir} exists and is not a directory")
    if (output_dir / RUN_FILE).exists():
        return "finished"
    return "partial" if any(output_dir.iterdir()) else "empty"


def _check_output_dir(opts: TrainOptions) -> tuple[Path, str]:
    out = Path(opts.output_dir).expanduser().resolve()
    state = run_state(out)
    if state == "finished" and not opts.overwrite:
        raise ReprtoolsError(f"{out} already holds a finished run; pass --overwrite to replace it or choose another -o")
    if state == "partial" and not (opts.overwrite or opts.resume):
        raise ReprtoolsError(
            f"{out} already holds an unfinished run; pass --resume to continue it or --overwrite to start again"
        )
    return out, state


def _auto_total(pools: dict[str, int], base_lang: str, target: str, ratio: float) -> int:
    """The largest N (at most 3000) whose mix at ``ratio`` both language pools can supply."""
    limits = [MAX_AUTO_EXAMPLES]
    if ratio < 1:
        limits.append(math.floor(pools.get(base_lang, 0) / (1 - ratio)))
    if ratio > 0:
        limits.append(math.floor(pools.get(target, 0) / ratio))
    total = max(min(limits), 1)
    while total > 1:  # rounding of the target share may need one example more than a pool holds
        n_target = target_count(ratio, total)
        if total - n_target <= pools.get(base_lang, 0) and n_target <= pools.get(target, 0):
            break
        total -= 1
    return total


def _versions() -> dict:
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


@dataclass
class RunResult:
    """What :func:`train` returns: the run directory, its manifest, and the trained PEFT model (in memory)."""

    output_dir: Path
    manifest: dict = field(default_factory=dict)
    model: object = None


def train(opts: TrainOptions) -> RunResult:
    """Train one adapter as ``opts`` says and write ``adapter/`` and ``run.json`` into ``opts.output_dir``."""
    from reprtools.data import load_examples
    from reprtools.data.mixing import mix
    from reprtools.languages import check_lang

    opts.validate()
    target_lang = check_lang(opts.lang)
    if target_lang == "en":
        raise ReprtoolsError("--lang is the target language mixed into English; choose one other than en")
    out, state = _check_output_dir(opts)

    # ---- data: everything about the input is checked before the model is loaded or a file is written
    dataset = load_examples(opts.data)
    pools = dataset.counts()
    if opts.ratio > 0 and target_lang not in pools:
        present = ", ".join(sorted(pools)) or "none"
        raise ReprtoolsError(f"no '{target_lang}' examples in {opts.data}; languages present: {present}")
    total = opts.num_examples or _auto_total(pools, "en", target_lang, opts.ratio)
    chosen = mix(dataset.examples, target_lang, opts.ratio, total, seed=opts.seed)

    # ---- model
    import torch
    import transformers
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, TrainingArguments

    from reprtools.data.prompts import tokenize_example
    from reprtools.models import load_tokenizer

    transformers.logging.set_verbosity_error()
    resolved = resolve_model(opts.model)
    source = str(resolved.path) if resolved.path is not None else resolved.reload_id
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    tokenizer = load_tokenizer(source)
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    base_params = count_all(model)

    features = [tokenize_example(tokenizer, ex, opts.max_length) for ex in chosen.examples]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = math.ceil(len(features) / (opts.batch_size * opts.gradient_accumulation * world))
    total_steps = opts.max_steps or max(1, math.ceil(steps_per_epoch * opts.epochs))

    spec = opts.adapter_spec()
    budget_match = None
    if opts.match_budget:
        target, described = parse_budget_target(opts.match_budget, model.config, spec)
        matched = match_rank(model.config, spec, target)
        spec = spec.with_rank(matched.rank)
        budget_match = {"target": described, "target_params": target, **matched.to_dict()}
        level = "" if matched.matched else " (" + matched.note + ")"
        print(
            f"reprtools: --match-budget {opts.match_budget}: {opts.method} rank {matched.rank} trains "
            f"{matched.trainable:,} parameters vs a target of {target:,}{level}",
            file=sys.stderr,
        )
    learning_rate = opts.learning_rate or default_learning_rate(opts.method)

    # ---- the run directory: from here on files are written
    if opts.overwrite and state != "empty":
        for name in (RUN_FILE, ADAPTER_DIR, CHECKPOINT_DIR, PISSA_INIT_DIR):
            target_path = out / name
            if target_path.is_dir():
                shutil.rmtree(target_path)
            elif target_path.exists():
                target_path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = out / CHECKPOINT_DIR
    resume_from = None
    if opts.resume:
        found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
        if found:
            resume_from = str(found[-1])
        else:
            print(f"reprtools: nothing to resume in {out}; starting from the beginning", file=sys.stderr)

    transformers.set_seed(opts.seed)
    peft_config = spec.config(total_step=total_steps)
    peft_model = get_peft_model(model, peft_config)
    peft_config = peft_model.peft_config["default"]
    is_main = int(os.environ.get("RANK", "0")) == 0
    pissa_init = None
    if opts.method == "pissa":
        pissa_init = out / PISSA_INIT_DIR
        if is_main:
            peft_model.save_pretrained(str(pissa_init))
    trainable = count_trainable(peft_model)

    counter = _TokenCounter(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    callbacks: list = []
    if opts.method == "adalora":
        callbacks.append(_AdaLoraAllocator(peft_model))
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.gradient_accumulation,
        learning_rate=learning_rate,
        max_steps=total_steps,
        lr_scheduler_type="linear",
        warmup_steps=0,
        logging_steps=opts.logging_steps,
        save_strategy="steps",
        save_steps=opts.save_steps,
        save_total_limit=2,
        seed=opts.seed,
        data_seed=opts.seed,
        bf16=use_bf16,
        gradient_checkpointing=opts.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if opts.gradient_checkpointing else None,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=not opts.progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = _ReprTrainer(
        model=peft_model,
        args=args,
        train_dataset=features,
        data_collator=counter,
        callbacks=callbacks,
        orth_reg_weight=getattr(peft_config, "orth_reg_weight", 0.0) if opts.method == "adalora" else 0.0,
    )
    if not opts.progress:
        trainer.remove_callback(PrinterCallback)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.time() - started

    if not trainer.is_world_process_zero():
        return RunResult(out, {}, peft_model)

    # ---- save: adapter first (temporary name, then rename), run.json last
    ranks = module_ranks(peft_model)
    tmp_adapter = out / f".{ADAPTER_DIR}.tmp"
    if tmp_adapter.exists():
        shutil.rmtree(tmp_adapter)
    saved = save_adapter(peft_model, tmp_adapter, spec, resolved.reload_id, pissa_init)
    if (out / ADAPTER_DIR).exists():
        shutil.rmtree(out / ADAPTER_DIR)
    tmp_adapter.rename(out / ADAPTER_DIR)

    history = trainer.state.log_history
    loss_curve = [
        {k: v for k, v in row.items() if k in ("step", "loss", "task_loss", "orth_reg", "learning_rate", "grad_norm")}
        for row in history
        if "loss" in row
    ]
    config_dict = peft_config.to_dict()
    config_dict["base_model_name_or_path"] = resolved.reload_id
    manifest = {
        "reprtools_run": 1,
        "method": opts.method,
        "rank": spec.rank,
        "saved_rank": saved.saved_rank,
        "peft_config": _jsonable(config_dict),
        "final_rank_per_module": ranks,
        "trainable_params": trainable,
        "base_params": base_params,
        "trainable_percent": 100.0 * trainable / base_params,
        "budget_match": budget_match,
        "notes": saved.notes,
        "data": {**chosen.to_dict(), "max_length": opts.max_length, "source": dataset.manifest()},
        "seed": opts.seed,
        "base_model": {
            "name": opts.model,
            "name_or_path": resolved.reload_id,
            "kind": resolved.kind,
            "fingerprint_sha256": fingerprint(resolved),
        },
        "training": {
            "learning_rate": learning_rate,
            "batch_size": opts.batch_size,
            "gradient_accumulation": opts.gradient_accumulation,
            "world_size": world,
            "max_steps": total_steps,
            "steps_done": trainer.state.global_step,
            "epochs": opts.epochs,
            "bf16": use_bf16,
            "gradient_checkpointing": opts.gradient_checkpointing,
            "resumed_from": resume_from,
            "final_loss": result.training_loss,
        },
        "loss_curve": loss_curve,
        "wall_time_s": wall,
        "tokens_seen": counter.tokens,
        "tokens_per_second": counter.tokens / wall if wall > 0 else None,
        "versions": _versions(),
        "command": sys.argv,
        "options": asdict(opts),
    }
    write_json(out / RUN_FILE, manifest)
    return RunResult(out, manifest, peft_model)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


class _TokenCounter:
    """Wraps a collator and counts the real (non-padding) tokens it hands to the model."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


class _AdaLoraAllocator(TrainerCallback):
    """Calls AdaLoRA's ``update_and_allocate`` after every optimizer step, before the gradients are zeroed
    (it scores each singular value by its gradient).  Plain Trainer never calls it, so AdaLoRA would silently
    train as a fixed-rank LoRA."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.peft_model.base_model.update_and_allocate(state.global_step)


class _ReprTrainer(Trainer):
    """Trainer that logs AdaLoRA's orthogonal regulariser apart from the task loss."""

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


__all__ = ["METHODS", "TrainOptions", "RunResult", "train", "run_state", "adalora_schedule", "orthogonal_regulariser"]
