"""``reprtools eval``: parse the options and call :mod:`reprtools.evaluate`."""

from __future__ import annotations

import click


@click.command("eval")
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--task", default="xnli", show_default=True,
              help="xnli, tydiqa, or any lm-eval task name ({lang} stands for each of --langs, e.g. 'xcopa_{lang}').")
@click.option("--data", "-d", default=None,
              help="The task's files: a folder like ../shared/data/xnli or ../shared/data/tydiqa (or xnli:DIR, "
                   "tydiqa:DIR) [default: the hub's XNLI or TyDiQA-GoldP, hf:xnli / hf:tydiqa].")
@click.option("--format", "format_", default="instruct", show_default=True, type=click.Choice(["instruct", "harness"]),
              help="instruct: the prompt the adapters were trained on; harness: lm-eval's own templates.")
@click.option("--langs", "-l", default="en,hi", show_default=True, help="Comma-separated ISO 639 codes.")
@click.option("--limit", default=None, type=int, help="Score at most the first N held-out items per language.")
@click.option("--output-dir", "-o", default=None, help="Where to write [default: FIRST_CHECKPOINT/eval].")
@click.option("--bootstrap", default=1000, show_default=True, type=int,
              help="Paired bootstrap resamples over items for the intervals (0: none).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the resampling.")
@click.option("--batch-size", "-b", default=None,
              help="Requests per forward pass, or 'auto' [default: 8 on the CPU, auto on a GPU].")
@click.option("--device", default="auto", show_default=True, help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.")
@click.option("--base/--no-base", default=True, show_default=True,
              help="Score the base model too (the reference); --no-base where it was scored already.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def evaluate(checkpoints, quiet: bool, format_: str, **options) -> None:
    """Score the base model and each CHECKPOINT (a reprtools run or a PEFT adapter directory) on held-out task
    items with lm-evaluation-harness; write scores.csv, items/ and eval.json."""
    from reprtools.evaluate import EvalOptions, evaluate as run_eval

    result = run_eval(EvalOptions(checkpoints=list(checkpoints), format=format_, progress=not quiet, **options))
    for row in result.scores.itertuples():
        lang = row.lang or row.task
        click.echo(f"reprtools:   {row.checkpoint} {lang} ({row.role}): {row.metric} {row.value:.3f} "
                   f"[{row.ci_low:.3f}, {row.ci_high:.3f}] over {row.n} items")
    click.echo(f"reprtools: scores in {result.scores_csv}")
