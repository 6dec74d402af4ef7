"""`reprtools stats STUDY_DIR` end to end on a synthetic results.csv: the tables, the notes, a half-finished
study, bad input as one line; and the verdicts against an independent computation from results.csv."""

import pandas as pd
import pytest
from click.testing import CliRunner
from statsmodels.stats.weightstats import ttost_paired
from stats_frames import study_frame

from reprtools import results
from reprtools.stats.run import TABLES
from reprtools_cli.main import cli, main


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("study")
    results.write_results(study_frame(seed=11, shifts={"vera": 0.08}, planted_layer=1), path / "results.csv")
    result = CliRunner().invoke(cli, ["stats", str(path), "--margin", "0.02", "--formats", "png,svg"])
    assert result.exit_code == 0, result.output
    return path, result.output


def test_writes_every_table_and_the_notes(study):
    path, output = study
    for name in TABLES:
        assert (path / "stats" / f"{name}.csv").stat().st_size > 0
        tex = (path / "stats" / f"{name}.tex").read_text()
        assert "\\toprule" in tex and "\\bottomrule" in tex
    notes = (path / "stats" / "notes.md").read_text()
    assert "never paired on seeds alone" in notes.lower() and "per-cell ANOVAs" in notes
    assert "comparison(s) different" in output and "comparison(s) equivalent" in output
    assert not list((path / "stats").glob(".*.tmp"))


def test_figures_written_and_not_empty(study):
    path, _ = study
    for kind in ("forest", "ratio", "balance", "layers"):
        for fmt in ("png", "svg"):
            files = list((path / "stats").glob(f"{kind}_*.{fmt}"))
            assert len(files) == 1 and files[0].stat().st_size > 2000, (kind, fmt)
    assert not list((path / "stats").glob("*.pdf"))


def test_verdicts_agree_with_an_independent_computation(study):
    path, _ = study
    raw = pd.read_csv(path / "results.csv")
    ev = raw[(raw["comparison"] == "evaluation") & (raw["role"] == "transfer")]
    wide = ev.pivot_table(index=["target_lang", "ratio", "seed"], columns="method", values="value")
    eq = pd.read_csv(path / "stats" / "equivalence.csv").query("role == 'transfer'").set_index("method")
    for method in ("dora", "vera", "adalora", "pissa"):
        d = wide[method] - wide["lora"]
        p = ttost_paired(wide[method].to_numpy(), wide["lora"].to_numpy(), -0.02, 0.02)[0]
        assert eq.loc[method, "p_tost"] == pytest.approx(p)
        assert eq.loc[method, "mean_diff"] == pytest.approx(d.mean())
    assert eq.loc["vera", "verdict"] == "different"
    assert (eq.drop(index="vera")["verdict"] == "equivalent").all()


def test_half_finished_study_says_what_is_missing(tmp_path):
    df = study_frame(seed=12)
    df = df[~((df["method"] == "pissa") & (df["role"] == "transfer")) & (df["comparison"] != results.SHIFT)]
    df = df[~df["checkpoint"].eq("vera-sw-r0.5-s2")]
    results.write_results(df, tmp_path / "results.csv")
    out = CliRunner().invoke(cli, ["stats", str(tmp_path), "--formats", "png"])
    assert out.exit_code == 0, out.output
    for kind in ("ratio", "balance", "forest"):  # the figures draw what is there
        assert len(list((tmp_path / "stats").glob(f"{kind}_*.png"))) == 1, kind
    assert "transfer: no scores yet for pissa" in out.output and "retention: no scores yet" not in out.output
    assert "block(s) lack some method's run" in out.output
    assert "representation <-> behaviour skipped" in out.output
    eq = pd.read_csv(tmp_path / "stats" / "equivalence.csv")
    assert set(eq.query("role == 'transfer'")["method"]) == {"dora", "vera", "adalora"}


def test_study_without_base_scores_says_so_and_draws_the_rest(tmp_path):
    df = study_frame(seed=15)
    results.write_results(df[df["checkpoint"] != "base"], tmp_path / "results.csv")
    out = CliRunner().invoke(cli, ["stats", str(tmp_path), "--formats", "png"])
    assert out.exit_code == 0, out.output
    assert "missing: no base-model scores" in out.output and "no transfer-vs-retention figure" in out.output
    assert not list((tmp_path / "stats").glob("balance_*")) and not list((tmp_path / "stats").glob("layers_*"))
    for kind in ("ratio", "forest"):
        assert len(list((tmp_path / "stats").glob(f"{kind}_*.png"))) == 1, kind
    assert "no base-model scores" in (tmp_path / "stats" / "notes.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--margin", "0"], "--margin 0.0 must be a positive number"),
    (["--alpha", "0.7"], "--alpha 0.7 must lie between 0 and 0.5"),
    (["--formats", "png,jpg"], "figure format(s) jpg unsupported"),
])
def test_bad_options_are_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["stats", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith(f"reprtools: error: {message}") and err.count("\n") == 1


def test_missing_or_empty_results_are_one_line(tmp_path, capsys):
    for content, message in ((None, "no results.csv in"), ("checkpoint,method\n", "has no rows yet")):
        if content is not None:
            (tmp_path / "results.csv").write_text(content)
        with pytest.raises(SystemExit):
            main(["stats", str(tmp_path)])
        err = capsys.readouterr().err
        assert err.startswith("reprtools: error: ") and message in err and err.count("\n") == 1


def test_only_probe_rows_is_one_line(tmp_path, capsys):
    df = study_frame(seed=13)
    results.write_results(df[df["comparison"] == results.SHIFT], tmp_path / "results.csv")
    with pytest.raises(SystemExit):
        main(["stats", str(tmp_path)])
    assert "no transfer or retention scores" in capsys.readouterr().err
    assert not (tmp_path / "stats").exists()


def test_three_seeds_in_one_block_are_flagged(tmp_path):
    df = study_frame(seed=14, seeds=(0, 1, 2))
    df = df[df["target_lang"].isin(["", "hi"]) & ((df["ratio"] == 0.5) | df["ratio"].isna())]
    results.write_results(df, tmp_path / "results.csv")
    out = CliRunner().invoke(cli, ["stats", str(tmp_path), "--no-figures"])
    assert out.exit_code == 0, out.output
    assert "power: wilcoxon (exact): cannot reach alpha in 8 of 8 comparison(s) (n = 3 or fewer; smallest p 0.25)" \
        in out.output
    assert "smallest p 0.25" in (tmp_path / "stats" / "notes.md").read_text()
