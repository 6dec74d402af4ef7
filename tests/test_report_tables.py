"""Booktabs tables: one per (comparison, metric), every row present, values and intervals rounded right,
special characters escaped, captions that say what, against what, the chance level and the layers shown."""

from __future__ import annotations

import re

import pytest
from report_frames import CHECKPOINTS, LANGS, synthetic_frame

from reprtools.errors import ReprtoolsError
from reprtools.report import latex_table, write_tables
from reprtools.results import frame


@pytest.fixture(scope="module")
def df():
    return synthetic_frame()


def body(tex: str) -> list[str]:
    inner = tex.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    return [line.strip() for line in inner.splitlines() if line.strip().endswith("\\\\")]


def caption(tex: str) -> str:
    return re.search(r"\\caption\{(.*)\}", tex).group(1)


def test_one_file_per_comparison_and_metric(df, tmp_path):
    paths = write_tables(df, tmp_path)
    pairs = set(zip(df.comparison, df.metric))
    assert len(paths) == len(pairs)
    assert {p.name for p in paths} == {f"{c}_{m}.tex" for c, m in pairs}
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # nothing else, no temporary files
    for p in paths:
        tex = p.read_text(encoding="utf-8")
        assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
        assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
        assert "|" not in re.search(r"\\begin\{tabular\}\{([^}]*)\}", tex).group(1)
        assert "\\label{tab:" in tex and "nan" not in tex


def test_every_row_present_in_order_with_escaped_names(df):
    tex = latex_table(df, "shift", "cka_linear")
    rows = body(tex)
    assert len(rows) == len(CHECKPOINTS) * len(LANGS)
    assert rows[0].startswith("lora\\_hi\\_10 & ") and "lora_hi_10" not in tex
    assert rows[len(LANGS)].startswith("dora-hi-10 & ")
    assert "\\cmidrule(lr){3-7}" in tex and "& 0 & 1 & 2 & 3 & 4 \\\\" in tex
    assert "against the base model" in caption(tex)


def test_values_and_intervals_rounded():
    rows = [dict(checkpoint="lora_a", method="lora", comparison="shift", reference="base", lang="en", layer=0,
                 metric="cka_linear", value=0.12345, ci_low=0.10345, ci_high=0.14345, interval="bootstrap"),
            dict(checkpoint="lora_a", method="lora", comparison="shift", reference="base", lang="en", layer=1,
                 metric="cka_linear", value=0.98765)]
    tex = latex_table(frame(rows), "shift", "cka_linear")
    assert r"0.123{\scriptsize\,$\pm$\,0.020}" in tex and "& 0.988 \\\\" in tex
    assert "half the width of the bootstrap interval" in caption(tex)
    rows[0].update(ci_low=0.05, ci_high=0.13)  # asymmetric: brackets
    tex = latex_table(frame(rows), "shift", "cka_linear")
    assert r"0.123{\scriptsize\,[0.050, 0.130]}" in tex and "Brackets" in caption(tex)
    rows[1].update(value=-0.00001, metric="cka_linear")
    assert "$-$0.000" not in latex_table(frame(rows), "shift", "cka_linear")
    rows[1].update(value=-0.25)
    assert "$-$0.250" in latex_table(frame(rows), "shift", "cka_linear")


def test_crosslingual_directed_pairs_and_chance(df):
    tex = latex_table(df, "crosslingual", "retrieval_top1")
    rows = body(tex)
    assert len(rows) == 3 * len(LANGS) * (len(LANGS) - 1)  # every model, both directions
    assert sum("$\\rightarrow$" in r for r in rows) == len(rows)
    assert "Chance level 0.05" in caption(tex) and "directed" in caption(tex)


def test_deep_models_thinned_and_said_so():
    rows = [dict(checkpoint="run", method="dora", comparison="shift", reference="base", lang="en", layer=layer,
                 metric="cka_linear_debiased", value=0.5) for layer in range(27)]
    tex = latex_table(frame(rows), "shift", "cka_linear_debiased")
    header = [line for line in tex.splitlines() if line.startswith("Model")][0]
    layers = [int(x) for x in re.findall(r"& (\d+)", header)]
    assert len(layers) == 10 and layers[0] == 0 and layers[-1] == 26
    assert "10 of 27 layers shown" in caption(tex)
    assert "run (DoRA)" in tex  # the method is named where the checkpoint name does not say it


def test_rows_without_layers_and_missing_cells(df):
    tex = latex_table(df, "evaluation", "accuracy")
    assert "Value" in tex and len(body(tex)) == 3 and "Chance level 0.33" in caption(tex)
    gappy = df[~((df.comparison == "seed_floor") & (df.method == "dora") & (df.layer == 2))]
    tex = latex_table(gappy, "seed_floor", "dissimilarity")
    assert "--" in body(tex)[1] and "not measured" in caption(tex)
    assert "Lower values mean more similar" in caption(tex) and "seed-pairs" in caption(tex)


def test_bad_input():
    with pytest.raises(ReprtoolsError, match="no 'shift' rows"):
        latex_table(synthetic_frame(), "shift", "nope")
    with pytest.raises(ReprtoolsError, match="no rows"):
        write_tables(frame([]), "unused")
