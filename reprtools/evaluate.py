"""``reprtools eval``: task accuracy of the base model and each checkpoint, scored by lm-evaluation-harness.

The base weights are read from disk once; the base is scored as it is, then each checkpoint is wrapped on that
same base and unwrapped again (:func:`reprtools.checkpoints.adapter_on`), as :mod:`reprtools.representations`
does.  Scoring is lm-evaluation-harness's own multiple-choice log-likelihood comparison, run in-process on the
model already in memory (:mod:`reprtools.eval_tasks` writes the task YAML it reads).

Items are the XNLI rows the training split leaves out (``reprtools.data.xnli.read_xnli(part="heldout")`` with the
training defaults: ``holdout=0.2``, ``seed=0``); when the folder has ``train-{lang}.tsv`` files that is the
whole dev file.  Prompts use the ``instruct`` format: the same instruction, input and label words as the training
examples, in :data:`reprtools.data.prompts.PROMPT_TEMPLATE`.

Outputs (``OUT``, default ``FIRST_CHECKPOINT/eval``), each written atomically:

* ``scores.csv`` -- the results schema (:mod:`reprtools.results`), comparison ``evaluation``, metric
  ``accuracy`` as a fraction, with a paired percentile bootstrap interval over items (the same resampled item
  indices for every model of one language);
* ``items/NAME/LANG.jsonl`` -- per item: id, predicted label index, target index, correct;
* ``eval.json`` -- lm_eval version, each task's YAML and its sha256, the prompt template, the options and the
  model and adapter fingerprints.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reprtools.errors import ReprtoolsError

TASKS = ("xnli",)
FORMAT = "instruct"
#: Training's defaults for the XNLI held-out split (:func:`reprtools.data.sources.load_examples`).
HOLDOUT, HOLDOUT_SEED = 0.2, 0


@dataclass
class EvalOptions:
    """What ``reprtools eval`` is asked: checkpoints (run or adapter directories of one base model), the task and
    its data folder, languages, at most ``limit`` items per language, where to write, the paired bootstrap
    (``bootstrap`` resamples, 0 for none, drawn with ``seed``), the harness batch size and the device."""

    checkpoints: list[str]
    data: str
    task: str = "xnli"
    langs: str | list[str] = "en,hi"
    limit: int | None = None
    output_dir: str | None = None
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 8
    device: str = "auto"
    progress: bool = True


@dataclass
class EvalResult:
    """Where the outputs are, the scores (results schema), the ``scores.csv`` path and ``eval.json``'s content."""

    output_dir: Path
    scores: object  # pandas DataFrame in the results schema
    scores_csv: Path
    summary: dict = field(default_factory=dict)


def _check(opts: EvalOptions) -> None:
    if opts.task not in TASKS:
        raise ReprtoolsError(f"unknown task {opts.task!r}; tasks: {', '.join(TASKS)}")
    if opts.limit is not None and (isinstance(opts.limit, bool) or opts.limit <= 0):
        raise ReprtoolsError(f"--limit must be a positive number of items, got {opts.limit}")
    if opts.bootstrap < 0:
        raise ReprtoolsError(f"--bootstrap must be 0 (no intervals) or a positive count, got {opts.bootstrap}")
    if opts.batch_size <= 0:
        raise ReprtoolsError(f"--batch-size must be positive, got {opts.batch_size}")


def _items(opts: EvalOptions) -> dict[str, list]:
    """Held-out XNLI examples per language, at most ``limit`` each."""
    from reprtools.data.xnli import read_xnli
    from reprtools.languages import parse_langs

    langs = parse_langs(opts.langs)
    examples = read_xnli(opts.data, langs, part="heldout", holdout=HOLDOUT, seed=HOLDOUT_SEED)
    items = {lang: [ex for ex in examples if ex.lang == lang][:opts.limit] for lang in langs}
    for lang, chosen in items.items():
        if not chosen:
            raise ReprtoolsError(f"xnli:{opts.data} leaves no held-out items for {lang!r}; add rows to dev-{lang}.tsv")
    return items


def _role(lang: str, target: str | None) -> str:
    if target and lang == target:
        return "transfer"
    return "retention" if lang == "en" else "other"


def _score(model, tokenizer, tasks, opts: EvalOptions) -> dict[str, list[dict]]:
    """Per language, per item: ``{"id", "pred", "target", "correct"}`` from lm_eval's samples."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=opts.batch_size, add_bos_token=True)
    res = simple_evaluate(model=lm, tasks=[t.name for t in tasks.values()], task_manager=tasks.manager,
                          log_samples=True, verbosity="ERROR")
    out = {}
    for lang, task in tasks.items():
        samples = sorted(res["samples"][task.name], key=lambda s: s["doc_id"])
        out[lang] = [{"id": s["doc"]["id"], "pred": int(np.argmax([float(r[0]) for r in s["filtered_resps"]])),
                      "target": int(s["target"]), "correct": bool(s["acc"])} for s in samples]
    return out


def _rows(name, method, run_cols, target, per_lang, boot) -> list[dict]:
    from reprtools import results
    from reprtools.measures.resampling import bootstrap_interval

    rows = []
    for lang, items in per_lang.items():
        correct = np.array([it["correct"] for it in items], dtype=np.float64)
        value = float(correct.mean())
        # the baseline a constant answer reaches on these very items (held-out parts need not be balanced): a
        # model that always says "neutral" scores the neutral share, not 1/3
        majority = float(np.bincount([it["target"] for it in items], minlength=3).max() / len(items))
        low = high = float("nan")
        if boot.get(lang) is not None and len(correct) >= 2:
            low, high = bootstrap_interval(value, correct[boot[lang]].mean(axis=1), n=len(correct))
        rows.append({"checkpoint": name, "method": method, "comparison": results.EVALUATION,
                     "reference": "" if name == "base" else "base", "task": "xnli",
                     "role": "reference" if name == "base" else _role(lang, target), "lang": lang,
                     "metric": "accuracy", "value": value, "ci_low": low, "ci_high": high,
                     "interval": "bootstrap" if boot.get(lang) is not None else "", "n": len(correct),
                     "chance": majority, **run_cols})
    return rows


def _write_items(out: Path, name: str, per_lang: dict[str, list[dict]]) -> None:
    from reprtools.fileio import atomic_path

    for lang, items in per_lang.items():
        with atomic_path(out / "items" / name / f"{lang}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")


def evaluate(opts: EvalOptions) -> EvalResult:
    """Score the base model and every checkpoint of ``opts`` on held-out XNLI; write ``scores.csv``,
    ``items/`` and ``eval.json``.  Bad input raises :class:`ReprtoolsError` before anything is written."""
    import lm_eval
    from reprtools import results
    from reprtools.capture import resolve_device
    from reprtools.checkpoints import adapter_on, output_dir, read_checkpoints
    from reprtools.eval_tasks import write_tasks
    from reprtools.fileio import write_json
    from reprtools.measures.resampling import shared_bootstrap
    from reprtools.models import fingerprint, load_model

    _check(opts)
    checkpoints = read_checkpoints(opts.checkpoints)
    items = _items(opts)
    out = output_dir(opts.output_dir, checkpoints[0], "eval")
    boot = {lang: shared_bootstrap(len(its), opts.bootstrap, seed=opts.seed) if opts.bootstrap and len(its) >= 2
            else None for lang, its in items.items()}
    loaded = load_model(checkpoints[0].base, device=str(resolve_device(opts.device)))
    model, tokenizer = loaded.model, loaded.tokenizer
    model.eval()
    rows, scored = [], {}
    with write_tasks(items) as tasks:
        for ck in [None, *checkpoints]:
            name = "base" if ck is None else ck.name
            _say(opts, f"scoring {name} on {', '.join(items)}")
            with adapter_on(model, ck) as wrapped:
                per_lang = _score(wrapped, tokenizer, tasks, opts)
            run_cols = {} if ck is None else ck.run_columns()
            rows += _rows(name, "base" if ck is None else ck.method, run_cols,
                          None if ck is None else ck.settings.get("lang"), per_lang, boot)
            scored[name] = per_lang
        task_info = {t.name: {"yaml": t.yaml, "sha256": t.sha256, "items_sha256": t.items_sha256}
                     for t in tasks.values()}
    for name, per_lang in scored.items():  # written only once every model is scored
        _write_items(out, name, per_lang)
    scores = results.frame(rows)
    scores_csv = results.write_results(scores, out / "scores.csv")
    summary = {"task": opts.task, "format": FORMAT, "lm_eval_version": lm_eval.__version__, "tasks": task_info,
               "prompt_template": _template(), "limit": opts.limit, "langs": list(items),
               "items_per_lang": {lang: len(its) for lang, its in items.items()},
               "split": {"part": "heldout", "holdout": HOLDOUT, "seed": HOLDOUT_SEED}, "data": str(opts.data),
               "bootstrap": opts.bootstrap, "seed": opts.seed, "model": checkpoints[0].base,
               "model_fingerprint": fingerprint(loaded.resolved),
               "adapter_fingerprints": {ck.name: ck.fingerprint() for ck in checkpoints},
               "options": {k: v for k, v in asdict(opts).items() if k != "progress"}}
    write_json(out / "eval.json", summary)
    return EvalResult(out, scores, scores_csv, summary)


def _template() -> str:
    from reprtools.data.prompts import PROMPT_TEMPLATE

    return PROMPT_TEMPLATE


def _say(opts: EvalOptions, msg: str) -> None:
    if opts.progress:
        print(f"reprtools: {msg}", file=sys.stderr, flush=True)
