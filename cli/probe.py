"""``reprtools probe`` and ``reprtools heatmap``: parse the options and call :mod:`reprtools.probe`."""

from __future__ import annotations

import click


@click.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--langs", "-l", default="en,hi,bn", show_default=True,
              help="Comma-separated ISO 639 codes (en, hi, swh, yo, ...).")
@click.option("--data", "-d", default="demo", show_default=True,
              help="Parallel sentences: demo | flores200:DIR | text:DIR (one LANG.txt per language).")
@click.option("--max-sentences", "-n", default=None, type=int, help="Use the first N sentences per language.")
@click.option("--pool", default="mean", show_default=True, metavar="mean|mean-all|last",
              help="mean: over the sentence's own tokens (no BOS/EOS, no padding); mean-all: BOS/EOS included; "
                   "last: the last real token.")
@click.option("--output-dir", "-o", default=None, help="Where to write [default: FIRST_CHECKPOINT/probe].")
@click.option("--device", default="auto", show_default=True, help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.")
@click.option("--batch-size", "-b", default=16, show_default=True, type=int, help="Sentences per forward pass.")
@click.option("--dtype", default="auto", show_default=True, metavar="auto|float32|bfloat16|float16",
              help="Model dtype (auto: bf16 on a GPU that supports it, else float32); pooling is always float32.")
@click.option("--max-length", default=256, show_default=True, type=int, help="Maximum tokens per sentence.")
@click.option("--bootstrap", default=0, show_default=True, type=int,
              help="Intervals on every number (0: none): N paired bootstrap resamples for per-sentence means, a "
                   "20-group sentence jackknife for the rest.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the resampling.")
@click.option("--no-figures", is_flag=True, help="Write metrics and representations only.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def probe(checkpoints, no_figures: bool, quiet: bool, **options) -> None:
    """Capture layer-wise hidden states per language for the base model and each CHECKPOINT (a reprtools run
    or a PEFT adapter directory), and compute CKA, cosine similarity and language-cluster separability."""
    from reprtools.probe import ProbeOptions, probe as run_probe

    result = run_probe(ProbeOptions(checkpoints=list(checkpoints), figures=not no_figures, progress=not quiet, **options))
    summary = result.summary
    click.echo(
        f"reprtools: probed base + {len(summary['checkpoints'])} checkpoint(s), {summary['layers']} layers, "
        f"{len(summary['langs'])} languages x {summary['data']['sentences_per_lang']} sentences; "
        f"{len(result.metrics)} numbers in {result.metrics_csv}"
    )
    estimator = summary["cka_estimator"].replace("_", " ")
    for name, value in summary["mean_cka_to_base"].items():
        click.echo(f"reprtools:   {name}: mean {estimator} to the base {value:.4f}")
    if result.figures:
        click.echo(f"reprtools: figures and tables in {result.output_dir / 'figures'}, {result.output_dir / 'tables'}")


@click.command()
@click.argument("probe_dir")
@click.option("--output-dir", "-o", default=None, help="Where to write figures/ and tables/ [default: PROBE_DIR].")
@click.option("--width", default="two", show_default=True, metavar="one|two", help="One- or two-column paper width.")
@click.option("--formats", default="pdf,png,svg", show_default=True, help="Comma-separated figure formats.")
def heatmap(probe_dir: str, output_dir: str | None, width: str, formats: str) -> None:
    """Redraw the heatmaps and LaTeX tables from a probe's metrics.csv alone (no model needed)."""
    from reprtools.probe import draw

    written = draw(probe_dir, output_dir, width=width, formats=[f.strip() for f in formats.split(",") if f.strip()])
    click.echo(f"reprtools: wrote {len(written)} files")
