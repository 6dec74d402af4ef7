"""The stats figures on a synthetic study: the transfer-vs-retention cells against a plain pandas computation,
the number of points each figure draws, every figure written and non-empty, and a method's colour the same in
every figure."""

import numpy as np
import pandas as pd
import pytest
from stats_frames import LANGS, METHODS, RATIOS, study_frame

from reprtools.report.style import new_figure, paper_style
from reprtools.stats import figures, scores

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def frame():
    return study_frame(seed=21, shifts={"vera": 0.05}, seeds=SEEDS)


@pytest.fixture(scope="module")
def cells(frame):
    sc = scores.cell_scores(frame)
    return scores.cell_changes(sc, scores.base_scores(frame, sc["model"].unique()))


def test_cell_changes_against_pandas(frame, cells):
    ev = frame[(frame["comparison"] == "evaluation") & (frame["checkpoint"] != "base")]
    base = frame[frame["checkpoint"] == "base"].set_index("lang")["value"]
    ev = ev.assign(change=ev["value"] - ev["lang"].map(base))
    per_run = ev.pivot_table(index=["method", "target_lang", "ratio", "seed"], columns="role", values="change")
    expected = per_run.groupby(level=["method", "target_lang", "ratio"]).agg(["mean", "std", "size"])
    assert len(cells) == len(expected) == len(METHODS) * len(LANGS) * len(RATIOS)
    got = cells.set_index(["method", "lang", "ratio"])
    for role in ("transfer", "retention"):
        np.testing.assert_allclose(got[role], expected[(role, "mean")].reindex(got.index), rtol=1e-12)
        np.testing.assert_allclose(got[f"{role}_sd"], expected[(role, "std")].reindex(got.index), rtol=1e-12)
    assert (got["n_seeds"] == len(SEEDS)).all()


def test_cell_changes_without_base_is_empty(frame):
    sc = scores.cell_scores(frame)
    assert scores.cell_changes(sc, scores.base_scores(frame[frame["checkpoint"] != "base"], ["tiny"])).empty


def drawn_points(fig):
    """Data points of every errorbar drawn in ``fig``."""
    return sum(len(c.lines[0].get_xdata()) for ax in fig.axes for c in ax.containers)


def test_balance_draws_one_point_per_cell_with_seed_spread(cells):
    with paper_style():
        fig = new_figure("two", 2.9)
        figures._balance(fig, cells, "accuracy")
    assert drawn_points(fig) == len(METHODS) * len(LANGS) * len(RATIOS)
    assert [ax.get_title() for ax in fig.axes] == [f"target {lang}" for lang in sorted(LANGS)]
    for ax in fig.axes:  # every point has error bars in both axes (three seeds, so an SD)
        for c in ax.containers:
            assert c.has_xerr and c.has_yerr
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["LoRA", "DoRA", "VeRA", "AdaLoRA", "PiSSA", "ratio 0", "ratio 0.5"]


def test_balance_spreads_coincident_cells():
    """Cells at the very same point (runs answering one label) must not hide each other on the page."""
    same = pd.DataFrame([{"model": "m", "task": "t", "format": "f", "metric": "accuracy", "method": m, "lang": "sw",
                          "ratio": 0.5, "transfer": -0.2, "retention": -0.25, "transfer_sd": np.nan,
                          "retention_sd": np.nan, "n_seeds": 1} for m in ("lora", "dora")])
    with paper_style():
        fig = new_figure("two", 2.9)
        figures._balance(fig, same, "accuracy")
        fig.canvas.draw()
    lines = [c.lines[0] for c in fig.axes[0].containers]
    xs = [line.get_transform().transform(np.c_[line.get_xdata(), line.get_ydata()])[0, 0] for line in lines]
    assert abs(xs[0] - xs[1]) > 3  # pixels apart
    lo, hi = fig.axes[0].get_xlim()
    assert lo < -0.2 < hi  # the data limits still hold the points


def test_ratio_plots_seed_means_of_language_averages(frame):
    sc = scores.cell_scores(frame)
    base = scores.base_scores(frame, ["tiny"])
    with paper_style():
        fig = new_figure("two", 2.9)
        figures._ratio(fig, sc, "accuracy", base)
    transfer = fig.axes[0]
    assert drawn_points(fig) == 2 * len(METHODS) * len(RATIOS)
    vera = transfer.containers[METHODS.index("vera")].lines[0].get_ydata()
    ev = frame[(frame["role"] == "transfer") & (frame["method"] == "vera")]
    expected = ev.groupby(["ratio", "seed"])["value"].mean().groupby("ratio").mean()
    np.testing.assert_allclose(vera, expected.to_numpy(), rtol=1e-12)
    base_line = [line for line in transfer.get_lines() if line.get_linestyle() == "--"]
    assert len(base_line) == 1 and base_line[0].get_ydata()[0] == pytest.approx(np.mean([0.40, 0.35]))


def test_a_method_keeps_its_colour():
    every = figures._colours(METHODS)
    assert figures._colours(["dora", "pissa"]) == {m: every[m] for m in ("dora", "pissa")}
    assert len(set(every.values())) == len(METHODS)


def test_write_figures_writes_every_kind(tmp_path, frame):
    from reprtools.stats.run import run_stats
    from reprtools import results

    results.write_results(study_frame(seed=22, planted_layer=2), tmp_path / "results.csv")
    result = run_stats(tmp_path, n_boot=50, formats=["pdf"])  # png and svg: tests/test_stats_cli.py
    for kind in ("ratio", "balance", "forest", "layers"):
        for fmt in ("pdf",):
            files = list((tmp_path / "stats").glob(f"{kind}_*.{fmt}"))
            assert len(files) == 1 and files[0].stat().st_size > 2000, (kind, fmt)
            assert files[0] in result.paths
