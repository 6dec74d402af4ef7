"""benchmarks/bench_eval.py on the tiny model and a small synthetic XNLI folder, as a subprocess: it runs ours, the
lm_eval CLI (base and peft) and batch-1 scoring on the same exported items, finds them in agreement item by item,
and prints the comparison table.  Keeps the benchmark from rotting between the runs on the real model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reprtools.data.xnli import LABELS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_eval.py"


def _xnli_dir(root: Path) -> Path:
    root.mkdir()
    for lang, (p, h) in {"en": ("A cat {} sat.", "A cat {} is here."),
                         "hi": ("बिल्ली {} बैठी।", "बिल्ली {} यहाँ है।")}.items():
        lines = [f"{p.format(i)}\t{h.format(i)}\t{LABELS[i % 3]}\n" for i in range(20)]  # 4 held out each
        (root / f"dev-{lang}.tsv").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench-eval")
    env = {**os.environ, "REPRTOOLS_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny-llama", "--data", str(_xnli_dir(tmp / "xnli")),
                           "--limit", "3", "--batch-size", "4", "--json", str(tmp / "bench.json")],
                          capture_output=True, text=True, env=env, timeout=600)
    return proc, (json.loads((tmp / "bench.json").read_text()) if (tmp / "bench.json").exists() else None)


def test_all_three_agree_item_by_item(bench):
    proc, report = bench
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert report["items"] == 6  # 3 per language
    for label, check in report["agreement"].items():
        assert check == {"compared": 6, "mismatches": []}, label
    for line in ("ours vs lm_eval CLI, base: 6/6 agree", "ours vs lm_eval CLI, lora-1step (peft): 6/6 agree",
                 "ours vs one by one, base: 6/6 agree"):
        assert line in proc.stdout


def test_the_cli_ran_on_the_exported_tasks_and_the_table_has_its_rows(bench):
    proc, report = bench
    assert "/eval/tasks --batch_size" in report["cli_command"]  # --include_path OUT/tasks, what ours exported
    assert "--batch_size 4" in report["cli_command"] and "xnli_en_harness_local,xnli_hi_harness_local" in \
        report["cli_command"]
    for key in ("ours_wall_s", "ours_base_s", "ours_base_requests_s", "cli_base_wall_s", "cli_peft_wall_s",
                "one_by_one_s", "one_by_one_requests_s"):
        assert report[key] > 0, key
    # the base's model requests are part of its harness call, which is part of the whole evaluate() call
    assert report["ours_base_requests_s"] < report["ours_base_s"] < report["ours_wall_s"]
    assert "ours / this = " in proc.stdout and "lm_eval CLI, base + peft (2 processes)" in proc.stdout
