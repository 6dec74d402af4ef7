"""Parameter budgets of the five methods on a model, from its config alone (no weights are read)."""

from __future__ import annotations

import json
from pathlib import Path

from reprtools.adapters import (
    METHODS, TARGET_MODULES, AdapterSpec, budget_table, check_method, match_rank, parse_budget_target,
    parse_target_modules,
)
from reprtools.errors import ReprtoolsError
from reprtools.models import resolve_model


def load_model_config(model: str):
    """The transformers config of ``model``: a ``config.json`` file, or anything ``--model`` accepts."""
    from transformers import AutoConfig

    path = Path(model).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise ReprtoolsError(f"config file not found: {model}")
        source = str(path)
    else:
        resolved = resolve_model(model)
        source = str(resolved.path) if resolved.path is not None else resolved.reload_id
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ReprtoolsError(f"could not read a model config from {model}: {str(exc).splitlines()[0]}") from exc


def parse_methods(methods: str | list[str]) -> list[str]:
    names = methods.split(",") if isinstance(methods, str) else list(methods)
    names = [check_method(m.strip().lower()) for m in names if m.strip()]
    if not names:
        raise ReprtoolsError(f"--methods is empty; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def budgets(model: str, methods="lora,dora,vera,adalora,pissa", rank: int = 8, match_budget: str | None = None,
            target_modules=TARGET_MODULES):
    """Budget rows per method at ``rank`` on ``target_modules`` (as ``reprtools train --target-modules``); with
    ``match_budget``, the matched rank's row per method instead."""
    base_spec = AdapterSpec(rank=rank, target_modules=parse_target_modules(target_modules))  # checks both
    names = parse_methods(methods)
    config = load_model_config(model)
    if match_budget is None:
        return budget_table(config, names, rank, base_spec)
    target, _ = parse_budget_target(match_budget, config, base_spec)
    return [match_rank(config, AdapterSpec(method=m, target_modules=base_spec.target_modules), target) for m in names]


def budget_report(model: str, methods="lora,dora,vera,adalora,pissa", rank: int = 8,
                  match_budget: str | None = None, as_json: bool = False, target_modules=TARGET_MODULES) -> str:
    """The budget table as text (or JSON), as ``reprtools budget`` prints it."""
    rows = budgets(model, methods, rank, match_budget, target_modules)
    modules = parse_target_modules(target_modules)
    if as_json:
        return json.dumps({"model": model, "target_modules": modules, "rows": [r.to_dict() for r in rows]}, indent=2)
    base = rows[0].base
    shown = modules if isinstance(modules, str) else ",".join(modules)
    lines = [f"model: {model}  ({base:,} parameters), adapters on {shown}", ""]
    header = f"{'method':<8} {'rank':>5} {'trainable':>14} {'% of base':>10}  note"
    lines += [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.method:<8} {r.rank:>5} {r.trainable:>14,} {r.percent:>9.4f}%  {r.note}")
    return "\n".join(lines)
