"""The study file: one TOML file that names a whole grid (models x tasks x methods x languages x ratios x seeds), read
into frozen dataclasses and checked before anything runs.

Tables and keys (every key is optional unless marked; unknown keys are refused at every level)::

    [study]     name (required), output_dir (default "study-NAME"), models, methods, ratios, seeds, num_examples
    [[tasks]]   name ("xnli", "tydiqa", ...), data (a data spec, as ``reprtools train --data``), langs (targets)
    [train]     rank, alpha, dropout, learning_rate, batch_size, max_steps, epochs, max_length, target_modules,
                global_batch_size, gradient_checkpointing, save_steps (the options of ``reprtools train``)
    [eval]      enabled, langs (``"target"`` stands for the cell's target language), limit, format, bootstrap
    [probe]     enabled, data, langs (``"target"`` as above), max_sentences, keep_representations (``false``:
                dropped once the metrics are written; ``true``: kept as captured, float32; ``"float16"``: kept at
                half the size)
    [resources] gpus, cpus, mem, time, partition  (per run: GPUs for both executors, the rest for Slurm)
    [resources.models."NAME"]  the same keys, for the runs of model NAME only (one of study.models, as written
                there); keys not given keep the ``[resources]`` value -- a study mixing model sizes asks for
                what each needs
    [stats]     margin (equivalence margin in the score's unit, default 0.02 = 2 points), alpha (default 0.05):
                ``reprtools stats``, run at the end of ``reprtools study``

Relative paths (``output_dir``, a model directory or ``.gguf`` file, and the path inside a data spec such as
``xnli:../data/xnli``) are resolved against the folder of the study file, so a study runs the same from any working
directory.

Checking here is what needs no model weights: keys and types, methods, ratios, languages the data holds (read with
the data readers, so ``xnli:DIR`` is read from disk; a hub spec ``hf:...`` is checked against the hub dataset's
language list, as it cannot be read offline), and whether a fixed ``num_examples`` mix can be filled at each ratio.
Each problem is one :class:`~reprtools.errors.ReprtoolsError` line naming the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from reprtools.errors import ReprtoolsError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package (pyproject's dependency)
    import tomli as tomllib

BASE_LANG = "en"
TARGET = "target"  # in [eval] and [probe] langs: the cell's target language(s)


@dataclass(frozen=True)
class Task:
    name: str
    data: str
    langs: tuple[str, ...]


@dataclass(frozen=True)
class TrainSettings:
    rank: int = 8
    alpha: float = 16
    dropout: float = 0.05
    learning_rate: float | None = None  # None: the method's default
    batch_size: int = 4
    max_steps: int | None = None
    epochs: float = 1.0
    max_length: int = 256
    target_modules: str = "all-linear"
    global_batch_size: int | None = None  # fixes the batch whatever the number of processes (reprtools train)
    gradient_checkpointing: bool = False
    save_steps: int = 50


@dataclass(frozen=True)
class EvalSettings:
    enabled: bool = True
    langs: tuple[str, ...] = (TARGET, BASE_LANG)
    limit: int | None = None
    format: str = "instruct"
    bootstrap: int = 1000


@dataclass(frozen=True)
class ProbeSettings:
    enabled: bool = True
    data: str = "demo"
    langs: tuple[str, ...] = (BASE_LANG, TARGET)
    max_sentences: int | None = 200
    keep_representations: bool | str = False  # False, True (float32, as captured) or "float16"


@dataclass(frozen=True)
class Resources:
    gpus: int = 1
    cpus: int = 4
    mem: str = "32G"
    time: str = "04:00:00"
    partition: str = ""


@dataclass(frozen=True)
class StatsSettings:
    margin: float = 0.02  # scores are fractions: 0.02 = 2 points (issue 11's default)
    alpha: float = 0.05


@dataclass(frozen=True)
class StudySpec:
    name: str
    path: Path  # the study file
    output_dir: Path
    models: tuple[str, ...]
    tasks: tuple[Task, ...]
    methods: tuple[str, ...]
    ratios: tuple[float, ...]
    seeds: tuple[int, ...]
    num_examples: int | None
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    resources: Resources = field(default_factory=Resources)
    stats: StatsSettings = field(default_factory=StatsSettings)
    #: ``(model, Resources)`` for the models with a ``[resources.models."NAME"]`` table (models as resolved)
    model_resources: tuple[tuple[str, Resources], ...] = ()


def resources_for(spec: StudySpec, model: str) -> Resources:
    """The resources of the runs of ``model``: its ``[resources.models."NAME"]`` table over ``[resources]``."""
    return dict(spec.model_resources).get(model, spec.resources)


_STUDY_KEYS = {"name", "output_dir", "models", "methods", "ratios", "seeds", "num_examples"}
_TOP = {"study", "tasks", "train", "eval", "probe", "resources", "stats"}


# ------------------------------------------------------------------------------------------------ reading
def read_spec(path: str | os.PathLike, check_data: bool = True) -> StudySpec:
    """Read and check the study file at ``path`` (see the module docstring); ``check_data=False`` skips reading
    the data (``--status`` and ``--collect``, which only need the settings)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ReprtoolsError(f"study file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ReprtoolsError(f"{path} is not valid TOML: {str(exc).splitlines()[0]}") from None
    try:
        spec = _build(raw, path.resolve())
        check_spec(spec, check_data=check_data)
    except ReprtoolsError as exc:  # the library's own checks name no file: say which one
        message = str(exc)
        if not message.startswith(f"{path.name}:"):
            raise ReprtoolsError(f"{path.name}: {message}") from None
        raise
    return spec


def _unknown(table: dict, allowed, where: str, path: Path) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise ReprtoolsError(f"{path.name}: unknown key {extra[0]!r} in {where}; allowed: {', '.join(sorted(allowed))}")


def _table(raw: dict, name: str, path: Path) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ReprtoolsError(f"{path.name}: [{name}] must be a table")
    return value


def _typed(value, kind, key: str, path: Path):
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool)}[kind]
    if not ok(value):
        noun = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]
        raise ReprtoolsError(f"{path.name}: {key} must be {noun}, got {value!r}")
    return float(value) if kind is float else value


def _settings(cls, table: dict, where: str, path: Path):
    """A settings dataclass from ``table``: unknown keys refused, each value of its field's type."""
    return cls(**_values(cls, table, where, path))


def _values(cls, table: dict, where: str, path: Path) -> dict:
    """The fields of ``cls`` that ``table`` gives, checked (unknown keys refused, each of its field's type)."""
    _unknown(table, [f.name for f in fields(cls)], f"[{where}]", path)
    values = {}
    for f in fields(cls):
        if f.name not in table:
            continue
        value, key = table[f.name], f"{where}.{f.name}"
        if f.name == "langs":
            values[f.name] = tuple(_typed(v, str, key, path) for v in _list(value, key, path))
            continue
        if f.name == "keep_representations":
            if value not in (True, False, "float16") or isinstance(value, (int, float)) and not isinstance(value, bool):
                raise ReprtoolsError(f"{path.name}: {key} must be false (drop them), true (keep float32) or "
                                     f"\"float16\" (keep at half the size), got {value!r}")
            values[f.name] = value
            continue
        kind = {"int": int, "float": float, "str": str, "bool": bool}[str(f.type).split(" ")[0]]
        values[f.name] = _typed(value, kind, key, path)
    return values


def _list(value, key: str, path: Path) -> list:
    if not isinstance(value, list) or not value:
        raise ReprtoolsError(f"{path.name}: {key} must be a non-empty list, got {value!r}")
    return value


def _resolve_path(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def resolve_data(spec: str, base: Path) -> str:
    """``spec`` with a relative path in it resolved against ``base``: ``xnli:DIR``, ``jsonl:PATH`` or a plain
    path; names without a path (``demo``, ``hf:xnli``) are kept."""
    from reprtools.data.sources import _BY_KIND

    kind, sep, arg = spec.partition(":")
    if spec in _BY_KIND or kind == "hf":
        return spec
    if sep and kind in _BY_KIND:
        return f"{kind}:{_resolve_path(arg, base)}" if arg else spec
    return _resolve_path(spec, base)


def _build(raw: dict, path: Path) -> StudySpec:
    _unknown(raw, _TOP, "the file (tables)", path)
    study = _table(raw, "study", path)
    _unknown(study, _STUDY_KEYS, "[study]", path)
    if "name" not in study:
        raise ReprtoolsError(f"{path.name}: [study] needs a name")
    name = _typed(study["name"], str, "study.name", path)
    base = path.parent
    out = _resolve_path(_typed(study.get("output_dir", f"study-{name}"), str, "study.output_dir", path), base)

    def items(key, kind, default):
        values = _list(study.get(key, default), f"study.{key}", path)
        return tuple(_typed(v, kind, f"study.{key}", path) for v in values)

    num = study.get("num_examples")
    models = items("models", str, ["tiny-llama"])
    resources, per_model = _resources(_table(raw, "resources", path), models, base, path)
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
        raise ReprtoolsError(f"{path.name}: give at least one [[tasks]] table (name, data, langs)")
    return StudySpec(
        name=name, path=path, output_dir=Path(out),
        models=tuple(_model_path(m, base) for m in models),
        tasks=tuple(_task(t, base, path) for t in tasks),
        methods=items("methods", str, ["lora"]), ratios=items("ratios", float, [0.1]),
        seeds=items("seeds", int, [0]),
        num_examples=None if num is None else _typed(num, int, "study.num_examples", path),
        train=_settings(TrainSettings, _table(raw, "train", path), "train", path),
        eval=_settings(EvalSettings, _table(raw, "eval", path), "eval", path),
        probe=_probe(_settings(ProbeSettings, _table(raw, "probe", path), "probe", path), base),
        resources=resources, model_resources=per_model,
        stats=_settings(StatsSettings, _table(raw, "stats", path), "stats", path),
    )


def _resources(table: dict, models, base: Path, path: Path) -> tuple[Resources, tuple[tuple[str, Resources], ...]]:
    """``[resources]`` and its ``[resources.models."NAME"]`` tables: each NAME one of ``models`` (as written in
    study.models, or the same path), its keys over ``[resources]``; keyed by the model as resolved."""
    from dataclasses import replace

    table = dict(table)
    overrides = table.pop("models", {})
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise ReprtoolsError(f'{path.name}: resources.models holds tables, one per model: '
                             f'[resources.models."MODEL"] with gpus, cpus, mem, time or partition')
    common = _settings(Resources, table, "resources", path)
    resolved = {m: _model_path(m, base) for m in models}
    per_model = {}
    for name, keys in overrides.items():
        model = resolved.get(name) or next((r for r in resolved.values() if r == _model_path(name, base)), None)
        if model is None:
            raise ReprtoolsError(f"{path.name}: [resources.models.{name!r}] names a model the study does not have; "
                                 f"study.models: {', '.join(models)}")
        per_model[model] = replace(common, **_values(Resources, keys, f"resources.models.{name!r}", path))
    return common, tuple(per_model.items())


def _model_path(model: str, base: Path) -> str:
    """A model given as a relative path (``./dir``, ``../x.gguf``) resolved against ``base``; names and hub ids
    (``org/name``) are kept."""
    if model.startswith(("./", "../", "~")) or model.endswith(".gguf") or (base / model).is_dir():
        return _resolve_path(model, base)
    return model


def _probe(probe: ProbeSettings, base: Path) -> ProbeSettings:
    from dataclasses import replace

    return replace(probe, data=resolve_data(probe.data, base))


def _task(table: dict, base: Path, path: Path) -> Task:
    _unknown(table, {"name", "data", "langs"}, "[[tasks]]", path)
    for key in ("name", "data", "langs"):
        if key not in table:
            raise ReprtoolsError(f"{path.name}: a [[tasks]] table needs {key} (name, data, langs)")
    name = _typed(table["name"], str, "tasks.name", path)
    data = resolve_data(_typed(table["data"], str, "tasks.data", path), base)
    langs = tuple(_typed(v, str, "tasks.langs", path) for v in _list(table["langs"], "tasks.langs", path))
    return Task(name, data, langs)


# ----------------------------------------------------------------------------------------------- checking
def check_spec(spec: StudySpec, check_data: bool = True) -> None:
    """Refuse impossible combinations (one line each): see the module docstring."""
    from reprtools.adapters import check_method
    from reprtools.languages import check_lang

    where = spec.path.name
    for method in spec.methods:
        check_method(method)
    for ratio in spec.ratios:
        if not 0.0 <= ratio <= 1.0:
            raise ReprtoolsError(f"{where}: study.ratios holds {ratio}; a ratio is the target share, in [0, 1]")
    for key in ("models", "methods", "ratios", "seeds"):
        values = getattr(spec, key)
        if len(set(values)) != len(values):
            raise ReprtoolsError(f"{where}: study.{key} lists a value twice: {list(values)}")
    if spec.num_examples is not None and spec.num_examples <= 0:
        raise ReprtoolsError(f"{where}: study.num_examples must be positive, got {spec.num_examples}")
    _check_train(spec)
    if len({t.name for t in spec.tasks}) != len(spec.tasks):
        raise ReprtoolsError(f"{where}: two [[tasks]] have the same name; give each task its own name")
    for task in spec.tasks:
        langs = [check_lang(lang) for lang in task.langs]
        if BASE_LANG in langs:
            raise ReprtoolsError(f"{where}: task {task.name} lists {BASE_LANG!r} as a target; targets are mixed into "
                                 f"{BASE_LANG!r}, so leave it out")
    _check_eval(spec)
    _check_stats(spec)
    if check_data:
        for task in spec.tasks:
            check_task_data(spec, task)
        if spec.probe.enabled:
            _check_probe_data(spec)


def _check_train(spec: StudySpec) -> None:
    from reprtools.train import TrainOptions

    t, where = spec.train, spec.path.name
    for name in ("rank", "batch_size", "max_length", "save_steps", "max_steps", "epochs", "learning_rate",
                 "global_batch_size"):
        value = getattr(t, name)
        if value is not None and value <= 0:
            raise ReprtoolsError(f"{where}: train.{name} must be positive, got {value}")
    for method in spec.methods:  # reprtools train's own checks (method, rank, alpha, batch options, ...)
        TrainOptions(output_dir=str(spec.output_dir), method=method, **asdict(t)).validate()


def _check_eval(spec: StudySpec) -> None:
    from reprtools.evaluate import TASKS

    e, where = spec.eval, spec.path.name
    if e.limit is not None and e.limit <= 0:
        raise ReprtoolsError(f"{where}: eval.limit must be a positive number of items, got {e.limit}")
    if e.bootstrap < 0:
        raise ReprtoolsError(f"{where}: eval.bootstrap must be 0 (no intervals) or a positive count, got {e.bootstrap}")
    formats = _eval_formats()
    if formats and e.format not in formats:
        raise ReprtoolsError(f"{where}: unknown eval.format {e.format!r}; formats: {', '.join(formats)}")
    for task in spec.tasks if e.enabled else ():
        if task.name not in TASKS:
            raise ReprtoolsError(f"{where}: reprtools eval cannot score task {task.name!r} (it scores "
                                 f"{', '.join(TASKS)}); rename the task or set [eval] enabled = false")


def _check_stats(spec: StudySpec) -> None:
    """The bounds ``reprtools stats`` itself enforces, checked before anything runs."""
    import math

    s, where = spec.stats, spec.path.name
    if not (math.isfinite(s.margin) and s.margin > 0):
        raise ReprtoolsError(f"{where}: stats.margin must be positive, in the score's unit (0.02 = 2 points), "
                             f"got {s.margin}")
    if not 0 < s.alpha < 0.5:
        raise ReprtoolsError(f"{where}: stats.alpha must lie between 0 and 0.5 (e.g. 0.05), got {s.alpha}")


def _eval_formats() -> tuple[str, ...]:
    """The prompt formats the installed ``reprtools eval`` knows (empty for a version without formats)."""
    import reprtools.eval_tasks as tasks

    return tuple(getattr(tasks, "FORMATS", ()))


def _hub_langs(data: str) -> set[str] | None:
    """The languages of a hub dataset spec, known without network; ``None`` for a spec that is not on the hub."""
    if data == "hf:xnli":
        from reprtools.data.xnli import HF_XNLI_LANGS

        return set(HF_XNLI_LANGS)
    if data == "hf:tydiqa":
        from reprtools.languages import TYDIQA_NAMES

        return set(TYDIQA_NAMES.values())
    return None


def check_task_data(spec: StudySpec, task: Task) -> None:
    """Every target language is in the task's data, and a fixed ``num_examples`` mix can be filled at every
    ratio (the same rule as :func:`reprtools.data.mix`)."""
    from reprtools.data import load_examples
    from reprtools.data.mixing import target_count
    from reprtools.languages import parse_langs

    where, langs = spec.path.name, parse_langs(list(task.langs))
    hub = _hub_langs(task.data)
    if hub is not None:
        missing = [lang for lang in langs if lang not in hub]
        if missing:
            raise ReprtoolsError(f"{where}: task {task.name}: {task.data} has no {missing[0]!r} data")
        return
    pools = load_examples(task.data).counts()
    for lang in [BASE_LANG, *langs]:
        if lang not in pools and (lang != BASE_LANG or any(r < 1 for r in spec.ratios)):
            present = ", ".join(sorted(pools)) or "none"
            raise ReprtoolsError(f"{where}: task {task.name}: no {lang!r} examples in {task.data}; languages "
                                 f"present: {present}")
    n = spec.num_examples
    if n is None:
        return
    for lang in langs:
        for ratio in spec.ratios:
            k = target_count(ratio, n)
            if k > pools.get(lang, 0) or n - k > pools.get(BASE_LANG, 0):
                raise ReprtoolsError(
                    f"{where}: task {task.name}: a mix of {n} at ratio {ratio} needs {k} {lang!r} and {n - k} "
                    f"{BASE_LANG!r} examples, but {task.data} has {pools.get(lang, 0)} and "
                    f"{pools.get(BASE_LANG, 0)}; lower study.num_examples")


def _check_probe_data(spec: StudySpec) -> None:
    from reprtools.data import load_parallel

    langs = {BASE_LANG}
    for task in spec.tasks:
        langs |= set(expand_langs(spec.probe.langs, task.langs))
    load_parallel(spec.probe.data, sorted(langs), spec.probe.max_sentences)


def expand_langs(langs, targets) -> list[str]:
    """``langs`` with ``"target"`` replaced by ``targets``, canonical, each once, in order."""
    from reprtools.languages import check_lang

    out: list[str] = []
    for lang in langs:
        for code in (targets if lang == TARGET else [lang]):
            code = check_lang(code)
            if code not in out:
                out.append(code)
    return out
