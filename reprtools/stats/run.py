"""``reprtools stats STUDY_DIR``: every analysis of :mod:`reprtools.stats` on ``STUDY_DIR/results.csv``,
written to ``STUDY_DIR/stats/`` as CSV + LaTeX tables and ``notes.md`` (what each test paired on, the power
and multiplicity notes, and what the study is still missing)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from reprtools.errors import ReprtoolsError

STATS_DIR = "stats"
TABLES = {
    "cells": "One-way ANOVA, Welch's ANOVA and Kruskal--Wallis across methods per cell (seeds unpaired)",
    "friedman": "Friedman's test over complete blocks (target language x ratio x seed)",
    "paired": "Each variant against LoRA, paired on blocks: Wilcoxon (Holm over variants), Hodges--Lehmann, "
              "rank-biserial",
    "equivalence": "Paired TOST against LoRA: interval of the difference, smallest margin established, verdict",
    "linear": "score ~ method * C(ratio) + C(lang), LoRA as reference, SEs clustered by training run",
    "power": "Smallest reachable p of exact rank tests and minimum detectable effects (power 0.8)",
    "behaviour": "Spearman correlation of each layer's shift from the base (1 - debiased CKA) with the score "
                 "change from the base, run-bootstrap interval",
}


@dataclass
class StatsResult:
    out_dir: Path
    paths: list[Path] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def _power_flags(power_table) -> list[str]:
    """One line per exact rank test that cannot reach alpha somewhere, whatever the data."""
    if power_table.empty or "reaches_alpha" not in power_table:
        return []
    out = []
    for test, sub in power_table[power_table["reaches_alpha"].notna()].groupby("test", sort=False):
        low = sub[sub["reaches_alpha"] == False]  # noqa: E712 (a nullable column)
        if len(low):
            out.append(f"{test}: cannot reach alpha in {len(low)} of {len(sub)} comparison(s) "
                       f"(n = {int(low['n'].max())} or fewer; smallest p {low['min_p'].min():.3g})")
    return out


def _check(margin: float, alpha: float, formats) -> None:
    bad = [f for f in formats if str(f).lower().lstrip(".") not in ("pdf", "png", "svg")]
    if bad or not formats:
        raise ReprtoolsError(f"figure format(s) {', '.join(map(str, bad)) or '(none)'} unsupported; "
                             "use pdf, png and/or svg")
    if not (math.isfinite(margin) and margin > 0):
        raise ReprtoolsError(f"--margin {margin} must be a positive number in the score's unit (0.02 = 2 points)")
    if not (0 < alpha < 0.5):
        raise ReprtoolsError(f"--alpha {alpha} must lie between 0 and 0.5 (e.g. 0.05)")


def _missing(scores, friedman, behaviour, base) -> list[str]:
    from reprtools.stats.scores import FAMILY, REFERENCE, families, method_order

    out = []
    if base.empty:
        out.append("no base-model scores (checkpoint 'base'): no score changes, so no transfer-vs-retention "
                   "figure and no representation <-> behaviour (enable the study's base step)")
    study_methods = set(scores["method"])  # results.csv knows only the methods some run has finished
    for fam, sub in families(scores):
        name = "/".join(str(fam[c]) for c in FAMILY)
        absent = [m for m in method_order(study_methods | {REFERENCE}) if m not in set(sub["method"])]
        if REFERENCE in absent:
            out.append(f"{name}: no LoRA scores yet, so no comparison against LoRA")
        elif absent:
            out.append(f"{name}: no scores yet for {', '.join(absent)}")
    for r in friedman.to_dict("records"):
        if r["incomplete_blocks"]:
            out.append(f"{r['model']}/{r['task']}/{r['format']}/{r['metric']}/{r['role']}: "
                       f"{r['incomplete_blocks']} block(s) lack some method's run (left out of Friedman)")
    if behaviour.empty:
        out.append("no probe shift rows (cka_linear_debiased) matched to scores with a base score: "
                   "representation <-> behaviour skipped (enable the probe step in the study)")
    return out


def _notes(cells, paired, behaviour, missing, flags, margin: float, alpha: float) -> str:
    from reprtools.stats.power import multiplicity_note

    lines = ["# reprtools stats: notes", "",
             f"alpha = {alpha:g}; equivalence margin = {margin:g} in the score's unit (fractions).", "",
             "## What each test pairs on",
             "- cells: unpaired; per cell (model, task, format, metric, role, target language, ratio) the methods' "
             "seeds are the groups.",
             "- friedman, paired, equivalence: blocks = target language x ratio x seed within model and task; the "
             "methods' runs in a block share data, seed and held-out items. Never paired on seeds alone. "
             "A block repeating another's runs (ratio-0 runs serve every target language) counts once.",
             "- linear: all runs of a family, SEs clustered by training run.",
             "- behaviour: runs (cells) within one family and target language; intervals resample whole runs.",
             "- All tests use one score per run (cell level), not per-item records.", "", "## Multiplicity"]
    if len(cells):
        lines.append("- " + multiplicity_note(len(cells), alpha, "per-cell ANOVAs"))
    if len(paired):
        lines.append("- paired Wilcoxon tests are Holm-corrected over the variants of each family.")
    if len(behaviour) and behaviour["p"].notna().any():
        lines.append("- behaviour p-values are Holm-corrected over the layers of each family and language; "
                     + multiplicity_note(int(behaviour["p"].notna().sum()), alpha, "layer correlations"))
    lines += ["", "## Power", "- see power.csv: `reaches_alpha` false means the exact rank test cannot reject "
              "at this n whatever the data (Wilcoxon: smallest two-sided p = 2/2^n)."]
    lines += [f"- {f}" for f in flags]
    lines += ["", "## Missing"] + ([f"- {m}" for m in missing] or ["- nothing: every family has every method."])
    return "\n".join(lines) + "\n"


def read_study(study_dir: str | os.PathLike):
    """The study's results frame, or :class:`ReprtoolsError` saying what to run first."""
    from reprtools.results import read_results

    study = Path(study_dir)
    if not study.is_dir():
        raise ReprtoolsError(f"{study} is not a directory; give the study's output directory")
    path = study / "results.csv"
    if not path.is_file():
        raise ReprtoolsError(f"no results.csv in {study}; run `reprtools study` on the study file first "
                             "(it writes results.csv as runs finish)")
    with open(path, encoding="utf-8", errors="replace") as fh:
        if sum(1 for line in fh if line.strip()) <= 1:
            raise ReprtoolsError(f"{path} has no rows yet: no run of the study has finished its eval step")
    return read_results(path)


def run_stats(study_dir: str | os.PathLike, margin: float = 0.02, alpha: float = 0.05, n_boot: int = 2000,
              figures: bool = True, formats=("pdf", "png", "svg")) -> StatsResult:
    """Analyse ``study_dir/results.csv`` and write ``study_dir/stats/`` (tables, ``notes.md`` and, unless
    ``figures`` is false, the figures of :mod:`reprtools.stats.figures`); a half-finished study is analysed
    as far as it goes and :attr:`StatsResult.missing` says what is not there yet."""
    from reprtools.fileio import atomic_path
    from reprtools.stats import behaviour, equivalence, linear, power, scores, tests
    from reprtools.stats.tables import write_table

    _check(margin, alpha, list(formats) if figures else ["pdf"])
    study = Path(study_dir)
    df = read_study(study)
    sc = scores.cell_scores(df)
    tables = {"cells": tests.cell_tests(sc), "friedman": tests.friedman_tests(sc),
              "paired": tests.paired_tests(sc, alpha)}
    tables["equivalence"] = equivalence.equivalence_table(sc, tables["paired"], margin, alpha)
    tables["linear"] = linear.linear_table(sc, alpha)
    tables["power"] = power.power_table(tables["cells"], tables["friedman"], tables["equivalence"], alpha)
    tables["behaviour"] = behaviour.behaviour_table(df, n_boot, alpha)
    out = study / STATS_DIR
    base = scores.base_scores(df, sc["model"].unique())
    result = StatsResult(out_dir=out, missing=_missing(sc, tables["friedman"], tables["behaviour"], base),
                         flags=_power_flags(tables["power"]))
    for name, table in tables.items():
        result.paths += write_table(table, out, name, TABLES[name])
    with atomic_path(out / "notes.md") as tmp:
        tmp.write_text(_notes(tables["cells"], tables["paired"], tables["behaviour"], result.missing, result.flags,
                              margin, alpha), encoding="utf-8")
    result.paths.append(out / "notes.md")
    if figures:
        from reprtools.stats.figures import write_figures

        result.paths += write_figures(sc, tables["equivalence"], tables["behaviour"], out, margin, formats,
                                      base=base)
    if len(tables["equivalence"]):
        result.verdicts = tables["equivalence"]["verdict"].value_counts().to_dict()
    return result
