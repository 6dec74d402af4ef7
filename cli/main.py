"""Entry point: the click group, and the one place that turns bad input into a one-line error."""

from __future__ import annotations

import sys
import warnings

import click

from reprtools import __version__
from reprtools.errors import ReprtoolsError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reprtools")
def cli() -> None:
    """Train LoRA, DoRA, VeRA, AdaLoRA and PiSSA adapters under one controlled multilingual set-up, and
    probe how each changes the model's layer-wise representations per language."""


def _register() -> None:
    from reprtools_cli import budget, evaluate, probe, train
    from reprtools_cli import study
    from reprtools_cli import weights
    from reprtools_cli import stats

    cli.add_command(train.train)
    cli.add_command(budget.budget)
    cli.add_command(probe.probe)
    cli.add_command(probe.heatmap)
    cli.add_command(evaluate.evaluate)
    cli.add_command(study.study)
    cli.add_command(weights.weights)
    cli.add_command(stats.stats)


_register()


def fail(message: str, code: int = 2) -> None:
    click.echo(f"reprtools: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad input ends with ``reprtools: error: ...`` on one line and exit status 2, no traceback."""
    warnings.filterwarnings("ignore", category=FutureWarning)  # libraries' deprecation notes are not for our users
    try:
        code = cli.main(args=argv, prog_name="reprtools", standalone_mode=False)
    except ReprtoolsError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.ClickException as exc:
        hint = " (see reprtools --help)" if isinstance(exc, click.UsageError) else ""
        fail(" ".join(exc.format_message().split()) + hint, exc.exit_code or 2)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
