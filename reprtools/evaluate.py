"""``reprtools eval``: task scores of the base model and each checkpoint, scored by lm-evaluation-harness.

The base weights are read from disk once; the base is scored as it is, then each checkpoint is wrapped on that
same base and unwrapped again (:func:`reprtools.checkpoints.adapter_on`), as :mod:`reprtools.representations`
does.  Scoring is lm-evaluation-harness's own (log-likelihood comparison for XNLI, greedy generation and its TyDiQA
metrics for TyDiQA-GoldP), run in-process on the model already in memory; :mod:`reprtools.eval_tasks` writes the
task files it reads and states the protocols.  Any other lm-eval task name is run as lm-eval defines it.

Items are the held-out part of the data (``load_examples(..., split="heldout")`` with the training defaults
``holdout=0.2``, split seed 0 -- the split's own, never a run's ``--seed``, so every method and seed is scored on
the same items): for XNLI the dev rows training leaves out, for TyDiQA the dev file (less what the train file
repeats) or, for a language with only a dev file (bn, te), its held-out 20%.  Each run's ``run.json`` records a
content hash of every training item; an item a run trained on is refused (:mod:`reprtools.data.overlap`).

Outputs (``OUT``, default ``FIRST_CHECKPOINT/eval``), each written atomically once every model is scored:

* ``scores.csv`` -- the results schema (:mod:`reprtools.results`), comparison ``evaluation``, ``task``,
  ``format`` and ``role`` (``transfer`` for the run's target language, ``retention`` for English, ``other``,
  ``mean`` for TyDiQA's non-English mean, ``reference`` for the base); values as fractions with a paired
  percentile bootstrap interval over items (the same resampled item indices for every model of one language);
  ``chance`` is what a constant answer scores on the items (XNLI);
* ``items/NAME/LANG.jsonl`` -- per item: id, prediction, target(s) and score(s), for paired statistics;
* ``tasks/`` -- the generated lm-eval tasks and items, so ``lm_eval --include_path OUT/tasks`` reruns them;
* ``eval.json`` -- lm_eval version, each task's YAML and its sha256, the protocol, the prompt template, the
  options, the overlap check and the model and adapter fingerprints.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reprtools.errors import ReprtoolsError
from reprtools.eval_tasks import FORMATS, METRICS, TASKS, Item

#: The held-out split the items come from: training's defaults (:func:`reprtools.data.sources.load_examples`), the
#: split's own share and seed -- never a run's ``--seed`` -- so every method and seed is scored on the same items.
HOLDOUT, HOLDOUT_SEED = 0.2, 0


@dataclass
class EvalOptions:
    """What ``reprtools eval`` is asked: checkpoints (run or adapter directories of one base model), the task
    (``xnli``, ``tydiqa`` or an lm-eval task name, where ``{lang}`` stands for each language), its data (a folder or
    a source spec such as ``xnli:DIR``, ``tydiqa:DIR``; ``None``: the hub's, ``hf:xnli`` / ``hf:tydiqa``; not used by
    lm-eval tasks), the prompt format
    (``instruct`` or ``harness``), languages, at most ``limit`` items per language, where to write, the paired
    bootstrap (``bootstrap`` resamples, 0 for none, drawn with ``seed``), the harness batch size (``None``: 8 on
    the CPU, ``"auto"`` on a GPU), the device, and whether to score the base model as well (``base``).  The
    bootstrap's item indices depend only on the number of items, ``bootstrap`` and ``seed``, so runs scored in
    separate calls on the same items stay paired."""

    checkpoints: list[str]
    data: str | None = None
    task: str = "xnli"
    format: str = "instruct"
    langs: str | list[str] = "en,hi"
    limit: int | None = None
    output_dir: str | None = None
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int | str | None = None
    device: str = "auto"
    base: bool = True  # score the base model too; False where it was scored already (a study scores it once)
    progress: bool = True


@dataclass
class EvalResult:
    """Where the outputs are, the scores (results schema), the ``scores.csv`` path and ``eval.json``'s content."""

    output_dir: Path
    scores: object  # pandas DataFrame in the results schema
    scores_csv: Path
    summary: dict = field(default_factory=dict)


def _check(opts: EvalOptions) -> None:
    if not opts.task or not str(opts.task).strip():
        raise ReprtoolsError(f"--task is empty; tasks: {', '.join(TASKS)} or an lm-eval task name")
    if opts.limit is not None and (isinstance(opts.limit, bool) or opts.limit <= 0):
        raise ReprtoolsError(f"--limit must be a positive number of items, got {opts.limit}")
    if opts.bootstrap < 0:
        raise ReprtoolsError(f"--bootstrap must be 0 (no intervals) or a positive count, got {opts.bootstrap}")
    if opts.format not in FORMATS:
        raise ReprtoolsError(f"unknown --format {opts.format!r}; formats: {', '.join(FORMATS)}")
    if opts.batch_size not in (None, "auto") and (not str(opts.batch_size).isdigit() or int(opts.batch_size) <= 0):
        raise ReprtoolsError(f"--batch-size must be a positive number or 'auto', got {opts.batch_size}")


def _spec(task: str, data: str | None) -> str:
    """A bare folder is read as the task's own format (``xnli:DIR`` / ``tydiqa:DIR``); no data means the hub's
    (``hf:xnli`` / ``hf:tydiqa``, which fails fast with a one-line error when the hub is unreachable)."""
    if not data:
        return f"hf:{task}"
    return data if ":" in str(data) and not Path(data).exists() else f"{task}:{data}"


def _gold_answers(dataset) -> dict[str, tuple[str, ...]]:
    """Every gold answer of every TyDiQA question in the files ``dataset`` was read from (an
    :class:`Example` keeps only the first)."""
    answers = {}
    for source in dataset.files:
        if source.sha256 is None:  # a hub split: the example's answer is all we have
            continue
        doc = json.loads(Path(source.path).read_text(encoding="utf-8"))
        for article in doc["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers[qa["id"]] = tuple(dict.fromkeys(a["text"] for a in qa["answers"] if a["text"].strip()))
    return answers


def _items(opts: EvalOptions, langs: list[str]) -> tuple[dict[str, list[Item]], object]:
    """Held-out items per language, at most ``limit`` each, and the dataset they came from."""
    from reprtools.data import load_examples

    dataset = load_examples(_spec(opts.task, opts.data), langs=langs, split="heldout", holdout=HOLDOUT,
                            seed=HOLDOUT_SEED)
    if dataset.kind.removeprefix("hf:") != opts.task:
        raise ReprtoolsError(f"--data {opts.data} holds {dataset.kind} items, not {opts.task}; give a "
                             f"{opts.task} folder")
    gold = _gold_answers(dataset) if opts.task == "tydiqa" else {}
    items = {}
    for lang in langs:
        chosen = [ex for ex in dataset.examples if ex.lang == lang][:opts.limit]
        if not chosen:
            raise ReprtoolsError(f"{opts.data} leaves no held-out {opts.task} items for {lang!r}")
        items[lang] = [Item(ex, gold.get(ex.id, (ex.output,)) if opts.task == "tydiqa" else ()) for ex in chosen]
    return items, dataset


def _check_heldout(items: dict[str, list[Item]], checkpoints) -> dict[str, str]:
    """Refuse items a checkpoint trained on; per checkpoint, how overlap was checked."""
    from reprtools.data.overlap import check_heldout, trained_content

    checked = {}
    for ck in checkpoints:
        manifest = {"data": ck.data}
        if trained_content(manifest) is None:
            checked[ck.name] = "not recorded (run.json without training-item hashes: written before reprtools " \
                               "recorded them, or a bare adapter)"
            continue
        for chosen in items.values():
            check_heldout([it.example for it in chosen], manifest, ck.name)
        checked[ck.name] = "no item in training data (content hashes)"
    return checked


def _role(lang: str, target: str | None) -> str:
    if "+" in lang:
        return "mean"
    if target and lang == target:
        return "transfer"
    return "retention" if lang == "en" else "other"


def _lm(model, tokenizer, opts: EvalOptions, device):
    from lm_eval.models.huggingface import HFLM

    batch = opts.batch_size or ("auto" if device.type == "cuda" else 8)
    batch = batch if batch == "auto" else int(batch)
    # instruct: the training tokenisation (the tokenizer's own BOS); harness: lm-eval's defaults, as its CLI
    extra = {"add_bos_token": True} if opts.format == "instruct" else {}
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch, **extra)


@contextmanager
def _silenced(enabled: bool):
    """Under ``--quiet``: nothing on stderr, at the file-descriptor level -- lm-eval's progress bars and warnings,
    transformers' weight-loading bar and the ``git describe`` lm-eval runs (its "fatal: not a git repository") all
    write there.  Errors are not lost: they propagate as exceptions and are reported after stderr is restored."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            os.dup2(devnull.fileno(), 2)
            yield
            sys.stderr.flush()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _run_harness(lm, names: list[str], manager, opts: EvalOptions) -> dict:
    from lm_eval import simple_evaluate

    try:
        return simple_evaluate(model=lm, tasks=names, task_manager=manager, log_samples=True, verbosity="ERROR")
    except (ConnectionError, OSError, ValueError) as exc:
        first = " ".join(str(exc).split()) or type(exc).__name__
        raise ReprtoolsError(f"lm-eval could not load {', '.join(names)} ({first[:200]}); lm-eval tasks read "
                             "their data from the Hugging Face hub: connect, or use --task xnli/tydiqa with --data"
                             ) from None


def _score(lm, tasks, opts: EvalOptions) -> dict[str, list[dict]]:
    """Per language, the per-item records (:func:`reprtools.eval_tasks.record`) of lm-eval's samples."""
    from reprtools.eval_tasks import record

    res = _run_harness(lm, [t.name for t in tasks.values()], tasks.manager, opts)
    return {lang: [record(opts.task, lang, s) for s in sorted(res["samples"][task.name], key=lambda s: s["doc_id"])]
            for lang, task in tasks.items()}


def _interval(value: float, replicates, n: int) -> tuple[float, float]:
    from reprtools.measures.resampling import bootstrap_interval

    if replicates is None or n < 2:
        return float("nan"), float("nan")
    return bootstrap_interval(value, replicates, n=n)


def _rows(model_cols: dict, task: str, per_lang: dict[str, list[dict]], boot, metrics) -> list[dict]:
    """One row per language and metric; for TyDiQA also the mean over the non-English languages (``lang`` the
    languages joined by ``+``, its interval from the same resampled items, its ``n`` their total)."""
    from reprtools.eval_tasks import item_score

    rows, reps = [], {}
    for lang, items in per_lang.items():
        for metric in metrics:
            scores = np.array([item_score(task, it, metric) for it in items], dtype=np.float64)
            value = float(scores.mean())
            reps[lang, metric] = None if boot.get(lang) is None else scores[boot[lang]].mean(axis=1)
            # the baseline a constant answer reaches on these very items (held-out parts need not be balanced): a
            # model that always says "neutral" scores the neutral share, not 1/3
            chance = (float(np.bincount([it["target"] for it in items], minlength=3).max() / len(items))
                      if task == "xnli" else float("nan"))
            rows.append({**model_cols, "lang": lang, "metric": metric, "value": value, "n": len(items),
                         "chance": chance, **_ci(value, reps[lang, metric], len(items))})
    others = [lang for lang in per_lang if lang != "en"]
    if task == "tydiqa" and len(others) > 1:
        for metric in metrics:
            value = float(np.mean([r["value"] for r in rows if r["lang"] in others and r["metric"] == metric]))
            parts = [reps[lang, metric] for lang in others]
            mean_reps = None if any(p is None for p in parts) else np.mean(parts, axis=0)
            n = sum(len(per_lang[lang]) for lang in others)
            rows.append({**model_cols, "lang": "+".join(others), "metric": metric, "value": value, "n": n,
                         "chance": float("nan"), **_ci(value, mean_reps, n)})
    return rows


def _ci(value, replicates, n) -> dict:
    low, high = _interval(value, replicates, n)
    return {"ci_low": low, "ci_high": high, "interval": "bootstrap" if replicates is not None else ""}


def _model_cols(ck, task: str, fmt: str) -> dict:
    from reprtools import results

    return {"checkpoint": "base" if ck is None else ck.name, "method": "base" if ck is None else ck.method,
            "comparison": results.EVALUATION, "reference": "" if ck is None else "base", "task": task,
            "format": fmt, **({} if ck is None else ck.run_columns())}


def _with_roles(rows: list[dict], ck) -> list[dict]:
    target = None if ck is None else ck.settings.get("lang")
    return [{**r, "role": "reference" if ck is None else _role(r["lang"], target)} for r in rows]


def _write_items(out: Path, name: str, per_lang: dict[str, list[dict]]) -> None:
    from reprtools.fileio import atomic_path

    for lang, items in per_lang.items():
        with atomic_path(out / "items" / name / f"{lang}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")


def evaluate(opts: EvalOptions) -> EvalResult:
    """Score the base model and every checkpoint of ``opts`` on the held-out items of the task (or on an lm-eval
    task as it is); write ``scores.csv``, ``items/`` and ``eval.json``.  Bad input raises :class:`ReprtoolsError`
    before anything is written."""
    from reprtools.checkpoints import output_dir, read_checkpoints
    from reprtools.eval_tasks import export_tasks
    from reprtools.languages import parse_langs

    _check(opts)
    checkpoints = read_checkpoints(opts.checkpoints)
    langs = parse_langs(opts.langs)
    if opts.task in TASKS:
        items, dataset = _items(opts, langs)
        overlap = _check_heldout(items, checkpoints)
        source = dataset.manifest()
    else:
        items, source = None, "lm-eval's own data"
        overlap = {ck.name: "not checked (an lm-eval task reads its own data)" for ck in checkpoints}
    out = output_dir(opts.output_dir, checkpoints[0], "eval")
    with _tasks(opts, langs, items) as tasks:
        rows, scored, loaded = _score_all(opts, checkpoints, tasks)
        export_tasks(tasks, out / "tasks")
        task_info = {t.name: {"yaml": t.yaml, "sha256": t.sha256, "items_sha256": t.items_sha256}
                     for t in tasks.values()}
    summary = _summary(opts, checkpoints, loaded, task_info, next(iter(scored.values())), source, overlap)
    return _write(out, rows, scored, summary)


def _tasks(opts: EvalOptions, langs: list[str], items):
    """The tasks to run: generated local tasks for xnli/tydiqa, else lm-eval's own (``{lang}`` expanded)."""
    import contextlib

    from reprtools.eval_tasks import Tasks, lm_eval_task, write_tasks

    if items is not None:
        return write_tasks(opts.task, opts.format, items)
    tasks = Tasks()
    if "{lang}" in opts.task:
        for lang in langs:
            tasks[lang] = lm_eval_task(opts.task.replace("{lang}", lang))
    else:
        tasks[""] = lm_eval_task(opts.task)
    from lm_eval.tasks import TaskManager

    tasks.manager = TaskManager()
    unknown = [t.name for t in tasks.values() if t.name not in tasks.manager.all_tasks]
    if unknown:
        raise ReprtoolsError(f"unknown task {unknown[0]!r}: not xnli or tydiqa, and lm-eval "
                             "has no task of that name (see `lm_eval ls tasks`)")
    return contextlib.nullcontext(tasks)


def _score_all(opts: EvalOptions, checkpoints, tasks):
    """Load the base once, score it, then each checkpoint wrapped on it; rows and per-item records.  The
    bootstrap's item indices are drawn once per language and shared by every model (paired intervals)."""
    from reprtools.capture import resolve_device
    from reprtools.checkpoints import adapter_on
    from reprtools.eval_tasks import metrics_of
    from reprtools.measures.resampling import shared_bootstrap
    from reprtools.models import load_model

    device = resolve_device(opts.device)
    with _silenced(not opts.progress):
        loaded = load_model(checkpoints[0].base, device=str(device))
    loaded.model.eval()
    rows, scored, boot = [], {}, None
    for ck in ([None] if opts.base else []) + list(checkpoints):
        name = "base" if ck is None else ck.name
        _say(opts, f"scoring {name} on {opts.task} ({opts.format}) in {', '.join(tasks) or 'its language'}")
        with adapter_on(loaded.model, ck) as wrapped, _silenced(not opts.progress):
            per_lang = _score(_lm(wrapped, loaded.tokenizer, opts, device), tasks, opts)
        if boot is None:
            boot = {lang: shared_bootstrap(len(its), opts.bootstrap, seed=opts.seed)
                    if opts.bootstrap and len(its) >= 2 else None for lang, its in per_lang.items()}
        rows += _with_roles(_rows(_model_cols(ck, opts.task, opts.format), opts.task, per_lang, boot,
                                  metrics_of(opts.task, per_lang)), ck)
        scored[name] = per_lang
    return rows, scored, loaded


def _summary(opts, checkpoints, loaded, task_info, items, source, overlap) -> dict:
    import lm_eval
    from reprtools.eval_tasks import QA_MAX_TOKENS
    from reprtools.models import fingerprint

    return {"task": opts.task, "format": opts.format, "lm_eval_version": lm_eval.__version__, "tasks": task_info,
            "prompt_template": _template() if opts.format == "instruct" else "lm-eval's own (see tasks)",
            "protocol": _protocol(opts.task, opts.format, QA_MAX_TOKENS), "limit": opts.limit,
            "langs": list(items), "items_per_lang": {lang: len(its) for lang, its in items.items()},
            "split": {"part": "heldout", "holdout": HOLDOUT, "seed": HOLDOUT_SEED, "source": source},
            "overlap_check": overlap, "bootstrap": opts.bootstrap, "seed": opts.seed, "model": checkpoints[0].base,
            "model_fingerprint": fingerprint(loaded.resolved),
            "adapter_fingerprints": {ck.name: ck.fingerprint() for ck in checkpoints},
            "options": {k: v for k, v in asdict(opts).items() if k != "progress"}}


def _protocol(task: str, fmt: str, max_tokens: int) -> str:
    if task not in TASKS:
        return "lm-eval's own task configuration (see tasks)"
    if task == "xnli":
        return ("multiple choice: log-likelihood of each answer after the prompt, accuracy; answers: "
                + ("the label words" if fmt == "instruct" else "lm-eval's full in-language sequences"))
    return ("greedy decoding until a newline or eos" + (f", at most {max_tokens} tokens" if fmt == "instruct" else "")
            + "; exact match and F1 with lm-eval's TyDiQA normalisation, SQuAD v1.1 F1; maximum over gold answers")


def _write(out: Path, rows, scored, summary) -> EvalResult:
    """Write items, scores.csv and eval.json (each atomically), only once every model is scored."""
    from reprtools import results
    from reprtools.fileio import write_json

    for name, per_lang in scored.items():
        _write_items(out, name, per_lang)
    scores = results.frame(rows)
    scores_csv = results.write_results(scores, out / "scores.csv")
    write_json(out / "eval.json", summary)
    return EvalResult(out, scores, scores_csv, summary)


def _template() -> str:
    from reprtools.data.prompts import PROMPT_TEMPLATE

    return PROMPT_TEMPLATE


def _say(opts: EvalOptions, msg: str) -> None:
    if opts.progress:
        print(f"reprtools: {msg}", file=sys.stderr, flush=True)
