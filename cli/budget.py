"""``reprtools budget``: trainable parameters of each method on a model, from its config alone."""

from __future__ import annotations

import click


@click.command()
@click.option("--model", "-m", default="gemma-3-270m", show_default=True,
              help="Built-in name, model directory, config.json file, .gguf file or hub id.")
@click.option("--methods", default="lora,dora,vera,adalora,pissa", show_default=True,
              help="Comma-separated methods.")
@click.option("--rank", "-r", default=8, show_default=True, type=int, help="Adapter rank.")
@click.option("--match-budget", default=None, metavar="lora|PCT",
              help="Also show the rank per method that comes closest to this budget.")
@click.option("--target-modules", default="all-linear", show_default=True,
              help="Layers that get adapters, as for reprtools train: all-linear or names such as q_proj,v_proj.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def budget(model: str, methods: str, rank: int, match_budget: str | None, target_modules: str, as_json: bool) -> None:
    """Table of trainable parameters (count and % of the base) per method, computed on the meta device."""
    from reprtools.budget import budget_report

    click.echo(budget_report(model, methods, rank, match_budget, as_json, target_modules))
