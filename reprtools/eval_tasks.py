"""lm-evaluation-harness task definitions for ``reprtools eval``, generated into a temporary folder.

One task per language, ``xnli_{lang}_local``: a multiple-choice task over a JSON-lines file of our items, whose
prompt is the training prompt (``format_prompt`` of the XNLI example, so the ``instruct`` format adapters were
trained on), whose choices are the label words and whose target is the label index.  The choice follows the
prompt directly (``target_delimiter: ""``), as the response follows ``### Response:\\n`` in training.  The
harness compares the log-likelihood of each choice; we write only the task files, not a scorer.
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


def task_yaml(name: str, data_file: Path) -> str:
    """The YAML text of one local XNLI task reading ``data_file``."""
    choices = json.dumps(list(LABELS))
    return (f"task: {name}\n"
            "dataset_path: json\n"
            "dataset_kwargs:\n"
            f"  data_files:\n    test: {json.dumps(str(data_file))}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            "doc_to_text: \"{{prompt}}\"\n"
            f"doc_to_choice: {choices}\n"
            "doc_to_target: label\n"
            "target_delimiter: \"\"\n"
            "metric_list:\n"
            "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")


@contextmanager
def write_tasks(items: dict[str, list]):
    """Write each language's items and task YAML into a temporary folder; yield :class:`Tasks`."""
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="reprtools-eval-") as tmp:
        root = Path(tmp)
        tasks = Tasks()
        for lang, examples in items.items():
            name = f"xnli_{lang}_local"
            data_file = root / f"{name}.jsonl"
            body = "".join(json.dumps({"id": ex.id, "prompt": format_prompt(ex), "label": LABELS.index(ex.output)},
                                      ensure_ascii=False) + "\n" for ex in examples).encode("utf-8")
            data_file.write_bytes(body)
            text = task_yaml(name, data_file)
            (root / f"{name}.yaml").write_text(text, encoding="utf-8")
            tasks[lang] = LocalTask(name, text, hashlib.sha256(body).hexdigest())
        tasks.manager = TaskManager(include_path=str(root))
        yield tasks
