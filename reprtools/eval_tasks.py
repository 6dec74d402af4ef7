"""lm-evaluation-harness task definitions for ``reprtools eval``, generated into a temporary folder.

We write only task files (items as JSON lines, YAML that reads them); scoring is the harness's own.  One task per
language, in one of two prompt formats:

* ``instruct`` -- the prompt the adapters were trained on (:func:`reprtools.data.prompts.format_prompt` of the
  item's :class:`Example`), the answer following it directly (``target_delimiter: ""``), as the response follows
  ``### Response:\\n`` in training.
* ``harness`` -- lm-eval's own task (``xnli_{lang}``, ``tydiqa_goldp_{lang}`` of the installed lm-eval), included
  unchanged (its templates, in-language prompts, label words and metric functions) with only the data source
  replaced by our held-out items in the hub's record layout.

Protocols (pinned in the YAML, recorded in ``eval.json``):

* **XNLI** -- ``multiple_choice``: the log-likelihood of each of the three answers given the prompt; accuracy.
  ``instruct`` scores the label words (``entailment``/``neutral``/``contradiction``) after the training prompt;
  ``harness`` scores lm-eval's full sequences (``premise, right? Yes, hypothesis`` in the language).
* **TyDiQA-GoldP** -- ``generate_until``: greedy decoding, stopping at a newline (and at the end-of-sequence
  token); exact match and F1 with lm-eval's TyDiQA normalisation, maximum over the gold answers
  (:mod:`reprtools.measures.qa`; in ``instruct`` the generated ``process_results`` calls lm-eval's function, in
  ``harness`` it is lm-eval's own).  ``instruct`` generates at most :data:`QA_MAX_TOKENS` tokens (answers are
  short spans; training responses end in eos); ``harness`` keeps lm-eval's settings.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reprtools.data.prompts import format_prompt
from reprtools.data.xnli import LABELS
from reprtools.errors import ReprtoolsError

TASKS = ("xnli", "tydiqa")
FORMATS = ("instruct", "harness")
#: The most tokens a TyDiQA answer may take in the ``instruct`` format.
QA_MAX_TOKENS = 64
#: What each task reports per item (besides id, prediction and target), in ``scores.csv`` order.
METRICS = {"xnli": ("accuracy",), "tydiqa": ("exact_match", "f1", "squad_f1")}
#: Per-sample metrics of lm-eval tasks whose aggregate is the mean over items (corpus-level ones such as BLEU are
#: not a mean of per-item numbers, so they are not reported per item or bootstrapped here).
_MEAN_METRICS = ("acc", "acc_norm", "exact_match", "f1", "em", "contains")


@dataclass(frozen=True)
class LocalTask:
    """One generated task: its name, YAML text and the sha256 of the items file it reads (the YAML names a
    temporary path, so the items' hash is what identifies the data across runs)."""

    name: str
    yaml: str
    items_sha256: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.yaml.encode("utf-8")).hexdigest()


class Tasks(dict):
    """``{lang: LocalTask}`` plus the harness ``TaskManager`` that finds them (``.manager``)."""

    manager: object = None
    root: str | None = None  # the folder the generated files are in


@dataclass(frozen=True)
class Item:
    """One item to score: the :class:`Example` (id, language, training-format prompt and answer) and, for
    TyDiQA, every gold answer (the example holds only the first)."""

    example: object
    answers: tuple[str, ...] = ()


#: lm-eval's files a harness-format task needs beside its language YAML (the file it includes, its scorer).
_LM_EVAL_SUPPORT = {"xnli": ("xnli_common_yaml",), "tydiqa": ("_tydiqa_goldp_common_yaml", "utils.py")}


def _lm_eval_task_file(task: str, lang: str) -> Path:
    """lm-eval's own YAML of ``task`` in ``lang`` (``xnli_{lang}.yaml``, ``tydiqa_goldp_{lang}.yaml``)."""
    import lm_eval

    folder, name = ("xnli", f"xnli_{lang}") if task == "xnli" else ("tydiqa", f"tydiqa_goldp_{lang}")
    path = Path(lm_eval.__file__).parent / "tasks" / folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem.rsplit("_", 1)[-1] for p in path.parent.glob(f"{name.rsplit('_', 1)[0]}_*.yaml"))
        raise ReprtoolsError(f"lm-eval {lm_eval.__version__} has no {name} task for the harness format; "
                             f"its languages: {', '.join(known)} (or use --format instruct)")
    return path


def _included_name(task: str, lang: str) -> str:
    # not *.yaml: the task manager indexes *.yaml files as tasks, and this one is only included
    return f"lm_eval_{_lm_eval_task_file(task, lang).stem}.yaml.inc"


def copy_lm_eval_files(task: str, lang: str, root: Path) -> None:
    """Copy lm-eval's own task files for the harness format into ``root`` (the language YAML under
    :func:`_included_name`, the common YAML it includes and the scorer it names), so the generated tasks do not
    depend on where lm-eval is installed: ``OUT/tasks`` reruns anywhere with the same lm-eval version."""
    source = _lm_eval_task_file(task, lang)
    (root / _included_name(task, lang)).write_bytes(source.read_bytes())
    for name in _LM_EVAL_SUPPORT[task]:
        (root / name).write_bytes((source.parent / name).read_bytes())


def _split_input(text: str, first: str, second: str) -> tuple[str, str]:
    """The two fields of an example's input ``f"{first}{a}\\n{second}{b}"`` (the readers' layout)."""
    head, sep, tail = text.rpartition(f"\n{second}")
    if not sep or not head.startswith(first):
        raise ReprtoolsError(f"cannot read the {first.strip(': ')} and {second.strip(': ')} back from an item's "
                             "input; the harness format needs items from the XNLI or TyDiQA readers")
    return head[len(first):], tail


def doc(task: str, fmt: str, item: Item) -> dict:
    """The JSON record of one item as the task's YAML reads it."""
    ex = item.example
    if fmt == "instruct":
        record = {"id": ex.id, "prompt": format_prompt(ex)}
        return record | ({"label": LABELS.index(ex.output)} if task == "xnli" else {"answers": list(item.answers)})
    if task == "xnli":
        premise, hypothesis = _split_input(ex.input, "Premise: ", "Hypothesis: ")
        return {"id": ex.id, "premise": premise, "hypothesis": hypothesis, "label": LABELS.index(ex.output)}
    context, question = _split_input(ex.input, "Passage: ", "Question: ")
    return {"id": ex.id, "title": "", "context": context, "question": question,
            "answers": {"text": list(item.answers), "answer_start": [-1] * len(item.answers)}}


def _data_source(data_file: Path, split: str) -> str:
    return ("dataset_path: json\n"
            "dataset_name: null\n"
            "dataset_kwargs:\n"
            f"  data_files:\n    {split}: {json.dumps(str(data_file))}\n")


def task_yaml(task: str, fmt: str, lang: str, name: str, data_file: Path) -> str:
    """The YAML text of one local task reading ``data_file``."""
    if fmt == "harness":
        # lm-eval's task, copied beside this file (copy_lm_eval_files); only the data source changes: no training
        # or few-shot split (zero-shot), our items as the validation split
        return (f"include: {_included_name(task, lang)}\n"
                f"task: {name}\n" + _data_source(data_file, "validation") +
                "training_split: null\n"
                "fewshot_split: null\n"
                "test_split: null\n"
                "validation_split: validation\n")
    head = f"task: {name}\n" + _data_source(data_file, "test") + "test_split: test\n"
    if task == "xnli":
        return head + ("output_type: multiple_choice\n"
                       "doc_to_text: \"{{prompt}}\"\n"
                       f"doc_to_choice: {json.dumps(list(LABELS))}\n"
                       "doc_to_target: label\n"
                       "target_delimiter: \"\"\n"
                       "metric_list:\n"
                       "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    return head + ("output_type: generate_until\n"
                   "doc_to_text: \"{{prompt}}\"\n"
                   "doc_to_target: \"{{answers[0]}}\"\n"
                   "target_delimiter: \"\"\n"
                   f"process_results: !function reprtools_qa.process_results_{lang}\n"
                   "generation_kwargs:\n"
                   "  until:\n    - \"\\n\"\n"
                   "  do_sample: false\n"
                   "  temperature: 0.0\n"
                   f"  max_gen_toks: {QA_MAX_TOKENS}\n"
                   "metric_list:\n"
                   "  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
                   "  - metric: f1\n    aggregation: mean\n    higher_is_better: true\n")


def _qa_module(langs) -> str:
    """``reprtools_qa.py`` beside the instruct YAML: lm-eval's own TyDiQA scoring, one function per language."""
    lines = ["from lm_eval.tasks.tydiqa.utils import process_results_lang\n"]
    for lang in langs:
        lines.append(f"\n\ndef process_results_{lang}(doc, results):\n"
                     f"    return process_results_lang(doc, results, {lang!r})\n")
    return "".join(lines)


@contextmanager
def write_tasks(task: str, fmt: str, items: dict[str, list[Item]]):
    """Write each language's items and task YAML into a temporary folder; yield :class:`Tasks`."""
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="reprtools-eval-") as tmp:
        root = Path(tmp)
        tasks = Tasks()
        if task == "tydiqa" and fmt == "instruct":
            (root / "reprtools_qa.py").write_text(_qa_module(items), encoding="utf-8")
        for lang, chosen in items.items():
            if fmt == "harness":
                copy_lm_eval_files(task, lang, root)
            name = f"{task}_{lang}_{fmt}_local"
            data_file = root / f"{name}.jsonl"
            body = "".join(json.dumps(doc(task, fmt, it), ensure_ascii=False) + "\n" for it in chosen).encode()
            data_file.write_bytes(body)
            text = task_yaml(task, fmt, lang, name, data_file)
            (root / f"{name}.yaml").write_text(text, encoding="utf-8")
            tasks[lang] = LocalTask(name, text, hashlib.sha256(body).hexdigest())
        # our folder only: indexing all of lm-eval's tasks costs seconds per call (harness YAML includes lm-eval's
        # file by its path, so it needs no index)
        tasks.manager = TaskManager(include_path=str(root), include_defaults=False)
        tasks.root = str(root)
        yield tasks


def record(task: str, lang: str, sample: dict) -> dict:
    """The per-item record of one lm-eval sample: id, prediction, target and the task's scores."""
    import numpy as np

    from reprtools.measures.qa import squad_f1

    if task not in METRICS:  # an lm-eval task: its per-sample numbers whose mean is the task's score
        numbers = {k: float(v) for k, v in sample.items() if k in _MEAN_METRICS and isinstance(v, (int, float))}
        return {"id": sample["doc_id"], "target": str(sample["target"]), **numbers}
    if task == "xnli":
        pred = int(np.argmax([float(r[0]) for r in sample["filtered_resps"]]))
        return {"id": sample["doc"]["id"], "pred": pred, "target": int(sample["target"]),
                "correct": bool(sample["acc"])}
    answers = sample["doc"]["answers"]
    answers = list(answers["text"] if isinstance(answers, dict) else answers)
    resp = sample["filtered_resps"][0]
    prediction = (resp if isinstance(resp, str) else resp[0]).strip()
    return {"id": sample["doc"]["id"], "prediction": prediction, "answers": answers,
            "exact_match": float(sample["exact_match"]), "f1": float(sample["f1"]),
            "squad_f1": squad_f1(prediction, answers)}


def item_score(task: str, item: dict, metric: str) -> float:
    """One item's score on ``metric`` (accuracy is the item's ``correct``)."""
    return float(item["correct"]) if metric == "accuracy" else float(item[metric])


def lm_eval_task(name: str) -> LocalTask:
    """An lm-eval task run as it is (no generated YAML or items file of ours)."""
    return LocalTask(name, "", "")


def metrics_of(task: str, per_lang: dict[str, list[dict]]) -> tuple[str, ...]:
    """The metrics to report: the task's own for xnli/tydiqa; for an lm-eval task, the per-item numbers its
    samples carry (:func:`record`)."""
    if task in METRICS:
        return METRICS[task]
    first = next((items[0] for items in per_lang.values() if items), {})
    return tuple(k for k in first if k not in ("id", "target"))


def export_tasks(tasks: Tasks, dest: Path) -> list[Path]:
    """Copy the generated tasks -- items, YAML, ``reprtools_qa.py`` and lm-eval's own files where used -- to
    ``dest``, each file written atomically, with every YAML reading the copied items, so ``lm_eval --include_path
    DEST --tasks NAME`` reruns exactly what ``reprtools eval`` scored.  Nothing is written for lm-eval's own tasks
    run as they are (no generated files)."""
    from reprtools.fileio import atomic_path

    if tasks.root is None:
        return []
    root, written = Path(tasks.root), []
    for source in sorted(p for p in root.iterdir() if p.is_file()):
        body = source.read_bytes()
        if source.suffix == ".yaml":
            body = body.replace(str(root).encode(), str(dest.resolve()).encode())
        with atomic_path(dest / source.name) as tmp:
            tmp.write_bytes(body)
        written.append(dest / source.name)
    return written
