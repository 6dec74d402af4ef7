"""``reprtools train``: one adapter, one controlled set-up, one run directory.

:func:`train` is four steps, each a function of its own:

1. :func:`prepare_data` checks every option, loads the data, mixes English with the target language and tokenises
   it.  Nothing is written and no weights are loaded, so bad input fails fast and leaves no trace.
   :func:`training_arguments` then fixes the schedule (batch, steps, seeds) the next steps share.
2. :func:`build_peft_model` loads the base model, picks the rank (``--match-budget``) and wraps it with peft.
3. :func:`make_trainer` prepares the run directory (``--overwrite``, ``--resume``) and builds the Trainer.
4. :func:`fit` trains; :func:`write_run` saves ``adapter/`` and ``run.json``.

The run directory gets ``adapter/`` (standard PEFT files; ``PeftModel.from_pretrained(original_base, adapter/)``
reproduces the trained model) and ``run.json`` (the manifest, see :mod:`reprtools.run_manifest`).  Both are written
under temporary names and renamed into place at the very end, ``run.json`` last: a directory without ``run.json``
is not a finished run.  Intermediate Trainer checkpoints for ``--resume`` live in ``checkpoints/``.

``--seed`` draws three things together: the data sample (:func:`reprtools.data.mix`), its order (the Trainer's
``data_seed``) and the adapter's initialisation and dropout (``transformers.set_seed`` before ``get_peft_model``,
the Trainer's ``seed``; VeRA's projections from ``projection_prng_key``).  The XNLI held-out split is *not* drawn
by it: every seed trains on the same pool, and the probe's held-out sentences stay held out.

Training uses transformers' :class:`~transformers.Trainer`, so the same call runs data-parallel under
``torchrun --nproc_per_node N`` or ``accelerate launch --num_processes N`` (NCCL on GPUs, gloo on CPUs): every
process trains on its shard of each global batch, gradients are averaged, and only the main process writes
(see :mod:`reprtools.distributed`).  ``--global-batch-size`` fixes the batch whatever the number of processes;
bf16 is used where the GPU supports it.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from reprtools.adapters import (
    METHODS, TARGET_MODULES, AdapterSpec, adalora_schedule, default_learning_rate, parse_target_modules,
)
from reprtools.distributed import accumulation_steps, bf16_supported, check_report_to, finish, needs_cpu_backend
from reprtools.errors import ReprtoolsError
from reprtools.models import DEFAULT_MODEL, resolve_model
from reprtools.run_manifest import ADAPTER_DIR, CHECKPOINT_DIR, PISSA_INIT_DIR, RUN_FILE, build_manifest
from reprtools.trainer import TrainingStopped, orthogonal_regulariser

BASE_LANG = "en"
MAX_AUTO_EXAMPLES = 3000
# after a signal the job has little time left: a process that never reaches the last barrier is not waited for long
STOP_FINISH_TIMEOUT_S = 60


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
    batch_size: int = 4  # per device (process)
    gradient_accumulation: int | None = None  # None: 1, or what --global-batch-size needs
    global_batch_size: int | None = None  # per-device batch x accumulation x processes; derives the accumulation
    max_steps: int | None = None
    epochs: float = 1.0
    max_length: int = 256
    seed: int = 0  # draws the data sample, its order and the adapter's initialisation (see the module docstring)
    gradient_checkpointing: bool = False
    match_budget: str | None = None
    pissa_niter: int = 4
    target_modules: str = TARGET_MODULES  # peft's "all-linear" (the study's set-up) or names, e.g. "q_proj,v_proj"
    report_to: str = "none"  # the Trainer's own logger: none, tensorboard or wandb
    save_steps: int = 50
    logging_steps: int = 1
    overwrite: bool = False
    resume: bool = False
    progress: bool = True

    def adapter_spec(self) -> AdapterSpec:
        """The adapter these options ask for; checks the method, rank, alpha, dropout and PiSSA iterations."""
        return AdapterSpec(self.method, self.rank, self.alpha, self.dropout, parse_target_modules(self.target_modules),
                           pissa_niter=self.pissa_niter, seed=self.seed)

    def validate(self) -> None:
        self.adapter_spec()
        if not 0.0 <= float(self.ratio) <= 1.0:
            raise ReprtoolsError(f"--ratio must be in [0, 1] (the target language's share), got {self.ratio}")
        for name in ("batch_size", "gradient_accumulation", "global_batch_size", "max_length", "save_steps",
                     "logging_steps"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
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
        if self.global_batch_size is not None and self.gradient_accumulation is not None:
            raise ReprtoolsError("--global-batch-size sets the gradient accumulation; leave out --gradient-accumulation")
        if self.global_batch_size is not None and self.global_batch_size % self.batch_size:
            raise ReprtoolsError(f"--global-batch-size {self.global_batch_size} is not a multiple of --batch-size "
                                 f"{self.batch_size}")
        check_report_to(self.report_to)


@dataclass
class RunResult:
    """What :func:`train` returns: the run directory, its manifest, and the trained PEFT model (in memory)."""

    output_dir: Path
    manifest: dict = field(default_factory=dict)
    model: object = None


@dataclass
class PreparedData:
    """Step 1's result: the checked run directory, the source data, the mix and its tokenised examples."""

    output_dir: Path
    state: str  # run_state() of output_dir before this run
    dataset: object  # reprtools.data.Dataset
    mix: object  # reprtools.data.Mix
    resolved: object  # reprtools.models.ResolvedModel
    tokenizer: object
    features: list[dict]


@dataclass
class PeftBuild:
    """Step 2's result: the PEFT-wrapped model and what decided its shape."""

    model: object  # peft.PeftModel
    spec: AdapterSpec  # after --match-budget
    base_params: int
    budget_match: dict | None


@dataclass
class Training:
    """Step 3's result: the Trainer, the checkpoint it resumes from and PiSSA's initial adapter."""

    trainer: object  # reprtools.trainer.ReprTrainer
    resume_from: str | None
    pissa_init: Path | None


@dataclass
class Fit:
    """What :func:`fit` measured.  ``tokens_seen`` counts the real (non-padding) tokens of the whole run, across
    resumes; ``session_tokens`` only those of this call, which ``wall_time_s`` timed."""

    result: object  # transformers.trainer_utils.TrainOutput
    wall_time_s: float
    tokens_seen: int
    session_tokens: int


def train(opts: TrainOptions) -> RunResult:
    """Train one adapter as ``opts`` says and write ``adapter/`` and ``run.json`` into ``opts.output_dir``."""
    data = prepare_data(opts)
    args = training_arguments(opts, data)
    build = build_peft_model(opts, data, total_steps=args.max_steps)
    training = make_trainer(opts, args, data, build)
    try:
        fitted = fit(training)
    except TrainingStopped:  # a signal: every process stopped at the same step, after its checkpoint
        finish(timeout_s=STOP_FINISH_TIMEOUT_S)
        raise
    result = write_run(opts, data, build, training, fitted)
    finish()  # the other processes return once the main one has written the run
    return result


# ---------------------------------------------------------------------------------------------- 1. data
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


def auto_num_examples(pools: dict[str, int], base_lang: str, target: str, ratio: float) -> int:
    """The largest N (at most 3000) whose mix at ``ratio`` both language pools can supply."""
    from reprtools.data.mixing import target_count

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


def _source(resolved) -> str:
    return str(resolved.path) if resolved.path is not None else resolved.reload_id


def prepare_data(opts: TrainOptions) -> PreparedData:
    """Check the options and the output directory, load the data for the two languages the mix draws from, mix
    them with ``--seed`` and tokenise the result.  Only the tokenizer is loaded and nothing is written."""
    from reprtools.data import load_examples, mix, tokenize_example
    from reprtools.languages import check_lang
    from reprtools.models import load_tokenizer

    opts.validate()
    target = check_lang(opts.lang)
    if target == BASE_LANG:
        raise ReprtoolsError("--lang is the target language mixed into English; choose one other than en")
    out, state = _check_output_dir(opts)
    # only the languages the mix draws from: hub XNLI needs them named, and the rest loads less
    langs = [lang for lang, used in ((BASE_LANG, opts.ratio < 1), (target, opts.ratio > 0)) if used]
    dataset = load_examples(opts.data, langs=langs)
    pools = dataset.counts()
    if opts.ratio > 0 and target not in pools:
        present = ", ".join(sorted(pools)) or "none"
        raise ReprtoolsError(f"no '{target}' examples in {opts.data}; languages present: {present}")
    total = opts.num_examples or auto_num_examples(pools, BASE_LANG, target, opts.ratio)
    chosen = mix(dataset.examples, target, opts.ratio, total, seed=opts.seed, base_lang=BASE_LANG)

    resolved = resolve_model(opts.model)
    tokenizer = load_tokenizer(_source(resolved))
    tokenizer.padding_side = "right"
    features = [tokenize_example(tokenizer, ex, opts.max_length) for ex in chosen.examples]
    return PreparedData(out, state, dataset, chosen, resolved, tokenizer, features)


# ------------------------------------------------------------------------------------------ the schedule
def training_arguments(opts: TrainOptions, data: PreparedData):
    """The Trainer's arguments: batch size, accumulation and schedule, checkpoints every ``--save-steps`` into
    ``checkpoints/``, ``--seed`` for both the Trainer and the data order, bf16 where the GPU supports it, and the
    Trainer's own count of the real (non-padding) tokens for ``tokens_per_second``.

    Under ``torchrun``/``accelerate launch`` building them sets up the process group (NCCL on GPUs, gloo on CPUs:
    :func:`reprtools.distributed.needs_cpu_backend`).  ``--global-batch-size`` then gives the accumulation
    (global / (per-device batch x ``args.world_size``)).  Without ``--max-steps`` the run takes ``--epochs`` passes
    over the data at the global batch size, rounded up; AdaLoRA's budget schedule is built from that count.
    """
    import torch
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(data.output_dir / CHECKPOINT_DIR),
        per_device_train_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.gradient_accumulation or 1,  # with --global-batch-size: set below
        use_cpu=needs_cpu_backend(),
        ddp_find_unused_parameters=False,  # every adapter parameter takes part in every step
        learning_rate=opts.learning_rate or default_learning_rate(opts.method),
        max_steps=opts.max_steps or 1,  # without --max-steps: set below, once args.world_size is known
        lr_scheduler_type="linear",
        warmup_steps=0,
        logging_steps=opts.logging_steps,
        save_strategy="steps",
        save_steps=opts.save_steps,
        save_total_limit=2,
        seed=opts.seed,
        data_seed=opts.seed,
        bf16=bf16_supported(),
        include_num_input_tokens_seen="non_padding",  # attention_mask.sum(), gathered over processes
        remove_unused_columns=False,
        report_to=opts.report_to,
        disable_tqdm=not opts.progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **_checkpointing_arguments(opts.gradient_checkpointing),
    )
    if opts.global_batch_size is not None:
        args.gradient_accumulation_steps = accumulation_steps(opts.global_batch_size, opts.batch_size, args.world_size)
    if opts.max_steps is None:
        global_batch = opts.batch_size * args.gradient_accumulation_steps * args.world_size
        args.max_steps = max(1, math.ceil(math.ceil(len(data.features) / global_batch) * opts.epochs))
    return args


def _checkpointing_arguments(enabled: bool) -> dict:
    """Gradient checkpointing on, under the name the installed transformers uses (``gradient_checkpointing`` was
    renamed ``activation_checkpointing``; the old name warns).  Off: nothing, the default."""
    if not enabled:
        return {}
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


# ------------------------------------------------------------------------------------------ 2. the model
def build_peft_model(opts: TrainOptions, data: PreparedData, total_steps: int) -> PeftBuild:
    """Load the base model in float32, choose the rank (``--match-budget``) and wrap it with peft, initialised
    under ``--seed``.  ``total_steps`` sizes AdaLoRA's budget schedule.  Nothing is written yet."""
    import torch
    import transformers
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from reprtools.adapters import check_target_modules, match_rank, parse_budget_target

    transformers.logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(_source(data.resolved), dtype=torch.float32)
    except OSError as exc:
        raise ReprtoolsError(f"could not load model '{opts.model}': {str(exc).splitlines()[0]}") from None
    base_params = model.num_parameters()

    spec, budget_match = opts.adapter_spec(), None
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

    transformers.set_seed(opts.seed)  # --seed draws the adapter's initialisation (the same in every process)
    check_target_modules(model, spec.target_modules)
    try:
        peft_model = get_peft_model(model, spec.config(total_step=total_steps))
    except ValueError as exc:  # peft: target modules not found in the base model
        raise ReprtoolsError(f"--target-modules {opts.target_modules}: {str(exc).splitlines()[0]}") from None
    return PeftBuild(peft_model, spec, base_params, budget_match)


# ---------------------------------------------------------------------------------------- 3. the Trainer
def make_trainer(opts: TrainOptions, args, data: PreparedData, build: PeftBuild) -> Training:
    """Prepare the run directory (:func:`_prepare_run_dir`) and build the Trainer: a right-padding collator that
    masks the padding out of the loss, AdaLoRA's allocator and regulariser logging, no console printer when
    quiet.  PiSSA's adapter as initialised is saved for the conversion at the end."""
    from transformers import DataCollatorForSeq2Seq, PrinterCallback

    from reprtools.trainer import AdaLoraAllocator, CheckpointOnSignal, ReprTrainer

    # every process has checked the run directory (prepare_data) before the main one changes it, and the others
    # look for a checkpoint to resume only once it has
    with args.main_process_first(local=False, desc="run directory"):
        resume_from = _prepare_run_dir(opts, data, is_main=args.process_index == 0)
    adalora = opts.method == "adalora"
    trainer = ReprTrainer(
        model=build.model,
        args=args,
        train_dataset=data.features,
        data_collator=DataCollatorForSeq2Seq(data.tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=([AdaLoraAllocator(build.model)] if adalora else []) + [CheckpointOnSignal()],
        orth_reg_weight=build.model.peft_config["default"].orth_reg_weight if adalora else 0.0,
    )
    if not opts.progress:
        trainer.remove_callback(PrinterCallback)
    pissa_init = None
    if opts.method == "pissa":
        pissa_init = data.output_dir / PISSA_INIT_DIR
        if trainer.is_world_process_zero():
            build.model.save_pretrained(str(pissa_init))
    return Training(trainer, resume_from, pissa_init)


def _prepare_run_dir(opts: TrainOptions, data: PreparedData, is_main: bool) -> str | None:
    """``--overwrite``: remove what a previous run left.  ``--resume``: the last checkpoint (transformers'
    ``get_last_checkpoint``, by step number), or ``None`` with a note when there is none.  The first files of
    the run are written here, after every check has passed."""
    from transformers.trainer_utils import get_last_checkpoint

    out = data.output_dir
    if opts.overwrite and data.state != "empty" and is_main:
        for name in (RUN_FILE, ADAPTER_DIR, CHECKPOINT_DIR, PISSA_INIT_DIR):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
            elif (out / name).exists():
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    if not opts.resume:
        return None
    checkpoints = out / CHECKPOINT_DIR
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        print(f"reprtools: nothing to resume in {out}; starting from the beginning", file=sys.stderr)
    return last


# ------------------------------------------------------------------------------------------- 4. the run
def fit(training: Training) -> Fit:
    """Train, from the last checkpoint on ``--resume``, and time it.  The real tokens come from the Trainer's own
    count (``num_input_tokens_seen``), which a checkpoint carries over to the resumed run."""
    from transformers import TrainerState
    from transformers.trainer import TRAINER_STATE_NAME

    trainer = training.trainer
    before = 0
    if training.resume_from is not None:
        before = TrainerState.load_from_json(str(Path(training.resume_from) / TRAINER_STATE_NAME)).num_input_tokens_seen
    started = time.time()
    result = trainer.train(resume_from_checkpoint=training.resume_from)
    wall = time.time() - started
    seen = int(trainer.state.num_input_tokens_seen)
    return Fit(result, wall, seen, seen - int(before))


def write_run(opts: TrainOptions, data: PreparedData, build: PeftBuild, training: Training, fitted: Fit) -> RunResult:
    """Save ``adapter/`` (PiSSA converted for the original base) and then ``run.json``, each under a temporary
    name renamed into place.  Only the main process writes; the others return an empty manifest."""
    from reprtools.adapters import module_ranks, save_adapter
    from reprtools.fileio import write_json

    out, peft_model = data.output_dir, build.model
    if not training.trainer.is_world_process_zero():
        return RunResult(out, {}, peft_model)
    ranks = module_ranks(peft_model)
    tmp_adapter = out / f".{ADAPTER_DIR}.tmp"
    if tmp_adapter.exists():
        shutil.rmtree(tmp_adapter)
    saved = save_adapter(peft_model, tmp_adapter, build.spec, data.resolved.reload_id, training.pissa_init)
    if (out / ADAPTER_DIR).exists():
        shutil.rmtree(out / ADAPTER_DIR)
    tmp_adapter.rename(out / ADAPTER_DIR)

    manifest = build_manifest(opts, data, build, training, fitted, saved, ranks)
    write_json(out / RUN_FILE, manifest)
    return RunResult(out, manifest, peft_model)


__all__ = [
    "METHODS", "TrainOptions", "RunResult", "train", "run_state", "prepare_data", "training_arguments",
    "build_peft_model", "make_trainer", "fit", "write_run", "auto_num_examples", "adalora_schedule",
    "orthogonal_regulariser",
]
