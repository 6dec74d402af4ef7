"""The plan of a study: its cells, the training runs behind them, and each run's steps with stable keys.

A **cell** is one point of the grid: model x task x method x target language x ratio x seed.  A **run** is one
trained adapter and its steps (train -> eval -> probe), in ``STUDY_DIR/runs/KEY/``:

* the training key is the first 16 hex digits of the sha256 of the resolved training settings only (model, data,
  method, target language, ratio, seed, N and the ``[train]`` options that change what is learned); the reprtools
  version is recorded in the step manifests, not keyed, so an upgrade does not retrain;
* at ratio 0 no target-language example is used, so the language is left out of the key: one run per
  (model, task, method, seed) serves every target language of the task, and its eval and probe cover them all;
* the eval and probe steps have keys of their own (the training key plus their settings), so adding an evaluation
  language or turning the probe on later runs only that step on the adapters already trained;
* the base model is scored once per (model, task, eval settings), not once per run: the runs' evals score only
  their adapter, and a **base step** keyed by the model, the task's data, the languages, limit, format and
  bootstrap scores the base into ``STUDY_DIR/base/KEY/`` (see :func:`reprtools.study.steps.do_base`).  Its options
  are exactly those of the evals it serves, languages included (one base step per target language, plus one for
  the ratio-0 runs that are scored on every target): the held-out items of a language can depend on which
  languages are read together (an XNLI folder uses its train files only when every language asked for has one),
  so the same call is what guarantees the base is scored on the runs' very items.  The paired bootstrap stays
  paired across these calls: its item indices depend only on the number of items, the bootstrap count and the seed.

:func:`write_jobs` writes each run's ``job.json`` (everything its worker needs) and ``cell.json``; the worker
(:mod:`reprtools.study.worker`) reads only that, never the study file.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reprtools.study.spec import BASE_LANG, Resources, StudySpec, Task, TrainSettings, expand_langs, resources_for

KEY_DIGITS = 16
RUNS_DIR = "runs"
JOB_FILE = "job.json"
#: [train] settings that do not change what is learned (where and how often checkpoints are written)
_NOT_KEYED = ("save_steps",)


def settings_key(settings: dict) -> str:
    """The first :data:`KEY_DIGITS` hex digits of the sha256 of ``settings`` as sorted, compact JSON."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_DIGITS]


@dataclass(frozen=True)
class Cell:
    """One grid point and the key of the run that trains it."""

    model: str
    task: str
    method: str
    lang: str
    ratio: float
    seed: int
    run_key: str


@dataclass
class Run:
    """One training run and its steps.  ``targets`` are the target languages it is evaluated on (one, or all of
    the task's at ratio 0); ``train`` are the :class:`~reprtools.train.TrainOptions` keywords (no output_dir);
    ``eval`` / ``base`` / ``probe`` are ``{"key", "options"}`` or ``None`` when the step is off (``base`` is
    shared by every run of the model and task: whichever run's worker gets there first scores the base);
    ``resources`` are its model's (:func:`~reprtools.study.spec.resources_for`): what the executors give it, not
    part of any key, so changing them never retrains."""

    key: str
    dir: Path
    model: str
    task: str
    data: str
    method: str
    ratio: float
    seed: int
    targets: tuple[str, ...]
    train: dict
    eval: dict | None = None
    base: dict | None = None
    probe: dict | None = None
    keep_representations: bool | str = False  # False, True or "float16" ([probe] keep_representations)
    cells: list[Cell] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)

    def job(self) -> dict:
        """What the worker needs, as JSON."""
        return {"key": self.key, "model": self.model, "task": self.task, "data": self.data, "method": self.method,
                "ratio": self.ratio, "seed": self.seed, "targets": list(self.targets), "train": self.train,
                "eval": self.eval, "base": self.base, "probe": self.probe, "keep_representations": self.keep_representations}


@dataclass
class Plan:
    spec: StudySpec
    runs: list[Run]
    cells: list[Cell]

    @property
    def dir(self) -> Path:
        return self.spec.output_dir


def training_settings(spec: StudySpec, model: str, task: Task, method: str, lang: str, ratio: float,
                      seed: int) -> dict:
    """The resolved settings a training key is made from (``lang`` empty at ratio 0).  ``[train]`` options at
    their default and an unset ``num_examples`` are left out, so a ``[train]`` option added in a later version
    does not change the keys of the runs already trained."""
    defaults = TrainSettings()
    train = {k: v for k, v in asdict(spec.train).items()
             if k not in _NOT_KEYED and v != getattr(defaults, k)}
    keyed = {"model": model, "data": task.data, "method": method, "lang": lang if ratio > 0 else "",
             "ratio": float(ratio), "seed": int(seed), **train}
    if spec.num_examples is not None:
        keyed["num_examples"] = spec.num_examples
    return keyed


def _eval_step(spec: StudySpec, task: Task, train_key: str, targets) -> dict | None:
    e = spec.eval
    if not e.enabled:
        return None
    options = {"task": task.name, "data": task.data,
               "langs": expand_langs(e.langs, targets), "limit": e.limit, "bootstrap": e.bootstrap}
    keyed = {"train": train_key, **options, "format": e.format}
    return {"key": settings_key(keyed), "options": options, "format": e.format}


def _base_step(model: str, eval_step: dict | None) -> dict | None:
    """The base model's eval for the runs of ``model`` whose eval step is ``eval_step``: the same options (task,
    data, languages, limit, bootstrap, format), keyed by the model instead of a training run."""
    if eval_step is None:
        return None
    options = dict(eval_step["options"])
    keyed = {"model": model, **options, "format": eval_step["format"]}
    return {"key": settings_key(keyed), "options": options, "format": eval_step["format"]}


def _probe_step(spec: StudySpec, train_key: str, targets) -> dict | None:
    p = spec.probe
    if not p.enabled:
        return None
    options = {"data": p.data, "langs": expand_langs(p.langs, targets), "max_sentences": p.max_sentences}
    return {"key": settings_key({"train": train_key, **options}), "options": options}


def make_plan(spec: StudySpec) -> Plan:
    """Every cell of ``spec`` and the runs behind them, in the file's order (ratio-0 cells share one run)."""
    from reprtools.languages import check_lang

    runs: dict[str, Run] = {}
    cells: list[Cell] = []
    for model in spec.models:
        for task in spec.tasks:
            targets = tuple(check_lang(lang) for lang in task.langs)
            for method in spec.methods:
                for ratio in spec.ratios:
                    for seed in spec.seeds:
                        for lang in targets:
                            settings = training_settings(spec, model, task, method, lang, ratio, seed)
                            key = settings_key(settings)
                            if key not in runs:
                                runs[key] = _new_run(spec, task, settings, key, targets if ratio == 0 else (lang,))
                                runs[key].base = _base_step(model, runs[key].eval)
                            cell = Cell(model, task.name, method, lang, float(ratio), int(seed), key)
                            runs[key].cells.append(cell)
                            cells.append(cell)
    return Plan(spec, list(runs.values()), cells)


def _new_run(spec: StudySpec, task: Task, settings: dict, key: str, targets: tuple[str, ...]) -> Run:
    train = {"model": settings["model"], "method": settings["method"], "data": task.data,
             "lang": settings["lang"] or targets[0], "ratio": settings["ratio"], "seed": settings["seed"],
             "num_examples": spec.num_examples, **asdict(spec.train)}
    return Run(key=key, dir=spec.output_dir / RUNS_DIR / key, model=settings["model"], task=task.name,
               data=task.data, method=settings["method"], ratio=settings["ratio"], seed=settings["seed"],
               targets=targets, train=train, eval=_eval_step(spec, task, key, targets),
               probe=_probe_step(spec, key, targets), keep_representations=spec.probe.keep_representations,
               resources=resources_for(spec, settings["model"]))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (1 <= I <= N) as ``(I, N)``; ``None`` for no sharding."""
    from reprtools.errors import ReprtoolsError

    if text is None:
        return None
    i, sep, n = str(text).partition("/")
    if not (sep and i.strip().isdigit() and n.strip().isdigit() and 1 <= int(i) <= int(n)):
        raise ReprtoolsError(f"--shard takes I/N with 1 <= I <= N (this process runs every N-th run from the I-th), "
                             f"got {text!r}")
    return int(i), int(n)


def shard_runs(runs: list[Run], shard: tuple[int, int] | None) -> list[Run]:
    """The runs shard ``(I, N)`` takes: every N-th from the I-th, so N processes split the study between them
    (each run's lock keeps two from ever working on one run)."""
    return runs if shard is None else runs[shard[0] - 1::shard[1]]


def write_jobs(plan: Plan) -> None:
    """Write every run's ``job.json`` and ``cell.json`` (its cells), atomically; unchanged files are not
    rewritten."""
    from reprtools.fileio import write_json

    for run in plan.runs:
        for name, content in ((JOB_FILE, run.job()), ("cell.json", [asdict(c) for c in run.cells])):
            path = run.dir / name
            if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != content:
                write_json(path, content)


# --------------------------------------------------------------------------------------------- estimate
def parameter_count(model: str) -> int | None:
    """The base model's parameter count from its config (a model built on the meta device: no weights are read);
    ``None`` where the config cannot be had offline."""
    from reprtools.adapters import _meta_model, count_all
    from reprtools.errors import ReprtoolsError
    from reprtools.models import resolve_model

    try:
        resolved = resolve_model(model)
        if resolved.path is None:
            return None
        from transformers import AutoConfig

        return count_all(_meta_model(AutoConfig.from_pretrained(str(resolved.path))))
    except (ReprtoolsError, OSError, ValueError):
        return None


def train_tokens(run: Run, pools: dict[str, int] | None) -> int:
    """An upper bound on the tokens one run trains on: steps x batch x max_length (padding included)."""
    from reprtools.train import auto_num_examples

    t = run.train
    n = t["num_examples"] or (auto_num_examples(pools, BASE_LANG, t["lang"], run.ratio) if pools else 3000)
    steps = t["max_steps"] or math.ceil(math.ceil(n / t["batch_size"]) * t["epochs"])
    return steps * t["batch_size"] * t["max_length"]


def estimate_flops(plan: Plan) -> dict[str, float | None]:
    """Per run: 6 x parameters x training tokens (the usual dense-transformer estimate, Kaplan et al. 2020, with
    every parameter in the backward pass; an adapter saves little of it), ``None`` where the parameter count is
    unknown."""
    from reprtools.data import load_examples
    from reprtools.study.spec import _hub_langs

    params = {m: parameter_count(m) for m in plan.spec.models}
    pools = {t.data: None if _hub_langs(t.data) is not None else load_examples(t.data).counts()
             for t in plan.spec.tasks}
    return {run.key: None if params[run.model] is None else 6.0 * params[run.model] * train_tokens(run, pools[run.data])
            for run in plan.runs}
