"""The README's notebook example runs as written, and `import reprtools` stays light."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _notebook_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From a notebook"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_notebook_example_runs_as_written(tmp_path):
    env = {**os.environ, "REPRTOOLS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", _notebook_example()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "en-hi debiased CKA, last layer:" in done.stdout
    assert (tmp_path / "runs" / "nb-lora" / "run.json").is_file()
    png = tmp_path / "runs" / "nb-cka.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_reprtools_does_not_load_the_heavy_libraries():
    code = "import sys, reprtools; print(sorted(m for m in ('torch', 'transformers', 'pandas', 'peft') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_lazy_exports_resolve_and_unknown_names_fail():
    import pytest

    import reprtools

    assert callable(reprtools.probe_checkpoints) and callable(reprtools.layer_heatmap)
    assert reprtools.measures.cka_linear_debiased.__module__.startswith("reprtools.measures")
    with pytest.raises(AttributeError):
        reprtools.no_such_thing  # noqa: B018
