"""``reprtools stats``: parse the options and call :func:`reprtools.stats.run.run_stats`."""

from __future__ import annotations

import click


@click.command()
@click.argument("study_dir", type=click.Path(file_okay=False))
@click.option("--margin", default=0.02, show_default=True, type=float,
              help="Equivalence margin in the score's unit (scores are fractions: 0.02 = 2 points).")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="Significance level of every test.")
@click.option("--formats", default="pdf,png,svg", show_default=True, help="Comma-separated figure formats.")
@click.option("--no-figures", is_flag=True, help="Write the tables only.")
def stats(study_dir: str, margin: float, alpha: float, formats: str, no_figures: bool) -> None:
    """Test the study in STUDY_DIR (its results.csv): per-cell ANOVA, paired comparisons and equivalence (TOST)
    of each variant against LoRA with verdicts, a clustered linear model, power notes, and the link between
    each layer's representation shift and the score change; tables and figures go to STUDY_DIR/stats/."""
    from reprtools.stats.run import run_stats

    result = run_stats(study_dir, margin=margin, alpha=alpha, figures=not no_figures,
                       formats=[f.strip() for f in formats.split(",") if f.strip()])
    click.echo(f"reprtools: {len(result.paths)} files in {result.out_dir}")
    for verdict, count in result.verdicts.items():
        click.echo(f"reprtools:   {count} comparison(s) {verdict}")
    for line in result.flags:
        click.echo(f"reprtools: power: {line}")
    for line in result.missing:
        click.echo(f"reprtools: missing: {line}")
