"""The five adapter methods, one registry entry each: build the peft config, count the budget, save it right.

The controlled setup of the reference study ("Which LoRA? ... LoRA Techniques During Multilingual Instruction
Tuning", Massey University, 2026) is the default: rank 8 on all linear layers of the transformer blocks (peft's
``"all-linear"``, which leaves out the LM head), the same alpha (16), dropout (0.05) and learning rate (2e-4)
for every method, except where a method needs its own:

* ``lora``    -- Hu et al. 2021.  ``LoraConfig(r, lora_alpha, lora_dropout)``.
* ``dora``    -- Liu et al. 2024.  LoRA plus a trainable magnitude vector per adapted layer (counted in the budget).
* ``pissa``   -- Meng et al. 2024.  LoRA initialised from the principal singular vectors of each weight.  Fast
  randomised SVD with ``pissa_niter`` subspace iterations (``pissa_niter_K``), or full SVD with ``pissa_niter=0``.
  PiSSA rewrites the base weights, so the saved adapter is *converted* to a plain LoRA of rank ``2r`` that loads
  on the ORIGINAL base with ``PeftModel.from_pretrained``; the manifest records the saved rank.
* ``adalora`` -- Zhang et al. 2023.  Starts at ``init_r = ceil(1.5 r)`` and prunes toward an average of
  ``target_r = r``; ``total_step`` comes from the real schedule, the warm-up ``tinit`` is 10% and the final fine-tuning
  ``tfinal`` 20% of it, and the trainer calls ``update_and_allocate`` after every optimizer step.
* ``vera``    -- Kopiczko et al. 2024.  Frozen random projections shared by all layers (saved with the adapter,
  ``save_projection=True``, so a reload is exact) and trainable scaling vectors; VeRA has no alpha, and its
  scaling vectors need a larger learning rate: 10x the shared default (the VeRA paper tunes it far higher than
  LoRA's).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from reprtools.errors import ReprtoolsError

METHODS = ("lora", "dora", "vera", "adalora", "pissa")
DEFAULT_RANK = 8
DEFAULT_ALPHA = 16
DEFAULT_DROPOUT = 0.05
DEFAULT_LEARNING_RATE = 2e-4
TARGET_MODULES = "all-linear"


@dataclass(frozen=True)
class AdapterSpec:
    """What the user chose; ``config()`` turns it into a peft config."""

    method: str = "lora"
    rank: int = DEFAULT_RANK
    alpha: float = DEFAULT_ALPHA
    dropout: float = DEFAULT_DROPOUT
    target_modules: str | list[str] = TARGET_MODULES
    pissa_niter: int = 4  # 0 = full SVD
    seed: int = 0

    def __post_init__(self):
        check_method(self.method)
        if not isinstance(self.rank, int) or self.rank <= 0:
            raise ReprtoolsError(f"--rank must be a positive integer, got {self.rank}")
        if self.alpha <= 0:
            raise ReprtoolsError(f"--alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ReprtoolsError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.pissa_niter < 0:
            raise ReprtoolsError(f"--pissa-niter must be >= 0 (0 = full SVD), got {self.pissa_niter}")

    def with_rank(self, rank: int) -> "AdapterSpec":
        return AdapterSpec(**{**asdict(self), "rank": rank})

    def config(self, total_step: int | None = None):
        """The peft config of this method (``total_step`` is needed by AdaLoRA only)."""
        return METHOD_REGISTRY[self.method].make_config(self, total_step)


def method_from_peft_config(config: dict) -> str:
    """Which of :data:`METHODS` a saved ``adapter_config.json`` holds (``peft_type`` plus DoRA's ``use_dora`` and
    PiSSA's ``init_lora_weights``); an adapter of another peft type keeps its type's name in lower case.

    A PiSSA adapter converted for the original base (what ``reprtools train`` saves) is a plain LoRA on disk and
    reads as ``lora`` here; a run's ``run.json`` says ``pissa``, and the probe prefers it."""
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type == "LORA":
        if config.get("use_dora"):
            return "dora"
        init = config.get("init_lora_weights")
        return "pissa" if isinstance(init, str) and init.lower().startswith("pissa") else "lora"
    return peft_type.lower() or "unknown"


def parse_target_modules(value) -> str | list[str]:
    """``--target-modules``: peft's ``"all-linear"`` (the study's set-up), or comma-separated module names
    (``"q_proj,v_proj"``) as a list; a list is kept, in order, without repeats."""
    if isinstance(value, (list, tuple)):
        names = [str(v).strip() for v in value]
    else:
        text = str(value).strip()
        if text == TARGET_MODULES:
            return TARGET_MODULES
        names = [name.strip() for name in text.split(",")]
    names = [name for name in names if name]
    if not names:
        raise ReprtoolsError(f"--target-modules is empty; give {TARGET_MODULES} or module names such as q_proj,v_proj")
    return list(dict.fromkeys(names))


def check_target_modules(model, target_modules) -> None:
    """Every name in a ``--target-modules`` list must name a module of ``model`` (peft's own check only fails
    when none does, so a misspelt second name would silently train fewer layers)."""
    if isinstance(target_modules, str):
        return
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in target_modules if t not in names]
    if missing:
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise ReprtoolsError(f"--target-modules: no module named {', '.join(missing)} in the model; "
                             f"its linear layers are {', '.join(linear)}")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ReprtoolsError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    return method


# ------------------------------------------------------------------------------------------------- configs
def _lora(spec: AdapterSpec, total_step, **extra):
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        **extra,
    )


def _dora(spec, total_step):
    return _lora(spec, total_step, use_dora=True)


def _pissa(spec, total_step):
    init = "pissa" if spec.pissa_niter == 0 else f"pissa_niter_{spec.pissa_niter}"
    # PiSSA's adapters carry the principal components themselves: the peft authors set dropout to 0
    return _lora(spec, total_step, init_lora_weights=init)


def adalora_schedule(total_step: int) -> dict:
    """AdaLoRA's budget schedule for a run of ``total_step`` optimizer steps: 10% warm-up, 20% final phase."""
    total_step = max(int(total_step), 1)
    tinit = int(0.1 * total_step)
    tfinal = int(0.2 * total_step)
    if tinit + tfinal >= total_step:  # very short runs: no warm-up, no final phase
        tinit, tfinal = 0, 0
    return {"total_step": total_step, "tinit": tinit, "tfinal": tfinal, "deltaT": 1}


def adalora_init_rank(rank: int) -> int:
    return math.ceil(1.5 * rank)


def _adalora(spec, total_step):
    from peft import AdaLoraConfig

    schedule = adalora_schedule(total_step if total_step is not None else 1000)
    return AdaLoraConfig(
        task_type="CAUSAL_LM",
        init_r=adalora_init_rank(spec.rank),
        target_r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        **schedule,
    )


def _vera(spec, total_step):
    from peft import VeraConfig

    return VeraConfig(
        task_type="CAUSAL_LM",
        r=spec.rank,
        vera_dropout=spec.dropout,
        target_modules=spec.target_modules,
        save_projection=True,
        projection_prng_key=spec.seed,
    )


@dataclass(frozen=True)
class Method:
    name: str
    make_config: Callable
    learning_rate: float = DEFAULT_LEARNING_RATE
    note: str = ""


METHOD_REGISTRY: dict[str, Method] = {
    "lora": Method("lora", _lora),
    "dora": Method("dora", _dora, note="magnitude vectors included"),
    "vera": Method("vera", _vera, learning_rate=10 * DEFAULT_LEARNING_RATE, note="shared frozen projections not counted"),
    "adalora": Method("adalora", _adalora, note="init_r = ceil(1.5 r) ranks until pruned to an average of r"),
    "pissa": Method("pissa", _pissa, note="saved as a rank-2r LoRA for the original base"),
}


def default_learning_rate(method: str) -> float:
    return METHOD_REGISTRY[check_method(method)].learning_rate


# ------------------------------------------------------------------------------------------------- budgets
def count_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_all(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_model(config):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def trainable_on_config(model_config, spec: AdapterSpec, final: bool = True) -> tuple[int, int]:
    """(trainable adapter parameters, base parameters) for ``spec`` on a model built from ``model_config``
    on the meta device: no weights are read or allocated.

    For AdaLoRA, ``final=True`` counts the budget after rank allocation (an average of ``r`` ranks per module:
    the parameters that survive pruning); ``final=False`` counts what it holds while training (``init_r``).
    """
    from peft import get_peft_model

    model = _meta_model(model_config)
    base = count_all(model)
    peft_config = spec.config(total_step=1000)
    if spec.method == "pissa":  # counts like LoRA; its SVD needs real weights, which the meta device lacks
        peft_config.init_lora_weights = True
    if spec.method == "adalora" and final:
        peft_config.init_r = spec.rank
    check_target_modules(model, spec.target_modules)
    try:
        peft_model = get_peft_model(model, peft_config)
    except ValueError as exc:  # peft: target modules not found in the model
        raise ReprtoolsError(f"--target-modules {spec.target_modules}: {str(exc).splitlines()[0]}") from None
    return count_trainable(peft_model), base


@dataclass
class Budget:
    method: str
    rank: int
    trainable: int
    base: int
    note: str = ""
    matched: bool = True  # False when the target budget was out of reach (VeRA)

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.base

    def to_dict(self) -> dict:
        return {**asdict(self), "percent": self.percent}


def budget_table(model_config, methods=METHODS, rank: int = DEFAULT_RANK, base_spec: AdapterSpec | None = None):
    """One :class:`Budget` per method at ``rank``, from the model's config alone (meta device)."""
    base_spec = base_spec or AdapterSpec()
    rows = []
    for method in methods:
        spec = AdapterSpec(**{**asdict(base_spec), "method": check_method(method), "rank": rank})
        trainable, base = trainable_on_config(model_config, spec)
        rows.append(Budget(method, rank, trainable, base, METHOD_REGISTRY[method].note))
    return rows


def max_rank(model_config) -> int:
    """The largest rank that is still low-rank for every adapted layer: the smallest in/out dimension."""
    import torch

    model = _meta_model(model_config)
    dims = [
        min(m.in_features, m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and m is not model.get_output_embeddings()
    ]
    if not dims:
        raise ReprtoolsError("the model has no linear layers to adapt")
    return min(dims)


def parse_budget_target(value: str, model_config, base_spec: AdapterSpec) -> tuple[int, str]:
    """``--match-budget lora`` (LoRA at ``--rank``) or a percentage of the base (``0.26`` or ``0.26%``)."""
    text = str(value).strip().lower()
    if text in METHODS:
        spec = AdapterSpec(**{**asdict(base_spec), "method": text})
        trainable, _ = trainable_on_config(model_config, spec)
        return trainable, f"{text} rank {base_spec.rank}"
    try:
        pct = float(text.rstrip("%"))
    except ValueError:
        raise ReprtoolsError(
            f"--match-budget must be a method name (e.g. lora) or a percentage of the base (e.g. 0.26%), got '{value}'"
        ) from None
    if not 0 < pct <= 100:
        raise ReprtoolsError(f"--match-budget percentage must be in (0, 100], got {pct}")
    _, base = trainable_on_config(model_config, AdapterSpec(**{**asdict(base_spec), "method": "lora", "rank": 1}))
    return round(base * pct / 100.0), f"{pct}% of the base"


def match_rank(model_config, spec: AdapterSpec, target: int) -> Budget:
    """The rank whose trainable-parameter count for ``spec.method`` comes closest to ``target``.

    Every method's count is affine in the rank (``a r + b``: per-rank factors plus, e.g., DoRA's magnitudes or
    VeRA's scaling vectors), so two counts on the meta device give ``a`` and ``b`` and a third checks them.
    Ranks are capped at :func:`max_rank`; when the target lies beyond the cap (VeRA, whose rank adds only one
    number per layer), the returned budget has ``matched=False`` and reports what the cap reaches.
    """
    (c1, base), (c2, _), (c3, _) = (trainable_on_config(model_config, spec.with_rank(r)) for r in (1, 2, 3))
    slope, offset = c2 - c1, 2 * c1 - c2
    if c3 != offset + 3 * slope or slope <= 0:  # pragma: no cover - guard against a peft change
        raise ReprtoolsError(f"cannot match budgets for {spec.method}: its parameter count is not affine in the rank")
    cap = max_rank(model_config)
    ideal = (target - offset) / slope
    candidates = {min(max(r, 1), cap) for r in (math.floor(ideal), math.ceil(ideal))}
    rank = min(candidates, key=lambda r: (abs(offset + slope * r - target), r))
    trainable = offset + slope * rank
    matched = 1 <= ideal <= cap
    note = METHOD_REGISTRY[spec.method].note
    if not matched:
        note = (
            f"no rank reaches the target of {target:,} trainable parameters "
            f"(rank {rank} is the {'largest' if ideal > cap else 'smallest'} possible)"
        )
    return Budget(spec.method, rank, trainable, base, note, matched)


# ------------------------------------------------------------------------------------------------- ranks
def module_ranks(peft_model, adapter_name: str = "default") -> dict[str, int]:
    """The rank each adapted module ends with (AdaLoRA: the ranks left after allocation)."""
    config = peft_model.peft_config[adapter_name]
    ranks = {}
    for name, module in peft_model.named_modules():
        r = getattr(module, "r", None)
        if isinstance(r, dict) and adapter_name in r:
            ranks[name.removeprefix("base_model.model.")] = int(r[adapter_name])
    pattern = getattr(config, "rank_pattern", None) or {}
    if type(config).__name__ == "AdaLoraConfig" and pattern:  # keys name the lora_E vectors, values their masks
        for key, mask in pattern.items():
            module = key.removeprefix("base_model.model.").removesuffix(".lora_E").removesuffix(f".{adapter_name}")
            if module in ranks:
                ranks[module] = int(sum(bool(x) for x in mask))
    return ranks


@dataclass
class SavedAdapter:
    path: str
    saved_rank: int | None = None
    notes: list[str] = field(default_factory=list)


def save_adapter(peft_model, out_dir, spec: AdapterSpec, reload_id: str, pissa_init_dir=None) -> SavedAdapter:
    """Save the adapter so plain ``PeftModel.from_pretrained(original_base, out_dir)`` reproduces the model.

    PiSSA is converted to a rank-``2r`` LoRA against the original base weights (``pissa_init_dir`` holds the
    adapter as initialised, saved before training).
    """
    config = peft_model.peft_config["default"]
    config.base_model_name_or_path = reload_id
    notes = []
    saved_rank = None if spec.method == "adalora" else spec.rank  # AdaLoRA: see the per-module ranks
    if spec.method == "pissa":
        if pissa_init_dir is None:
            raise AssertionError("PiSSA needs the initial adapter to convert its weights")
        peft_model.save_pretrained(str(out_dir), path_initial_model_for_weight_conversion=str(pissa_init_dir))
        saved_rank = 2 * spec.rank
        notes.append(f"PiSSA converted for the original base: saved rank {saved_rank} = 2 x {spec.rank}")
    else:
        peft_model.save_pretrained(str(out_dir))
    return SavedAdapter(str(out_dir), saved_rank, notes)
