"""The Typer app every command module registers on, and the wrapper that turns user errors into one line.

Its own module so that ``cli.py`` (which imports the command modules to register them) and the command
modules (which decorate their commands with :data:`app`) do not import each other.
User errors (:class:`AgeGenderError`) print one line to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from agegender.errors import AgeGenderError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Estimate age, gender and ethnicity from faces and pedestrian images; train and evaluate models.")


def _print_version(value: bool) -> None:
    if value:
        from agegender._version import __version__

        typer.echo(f"agegender {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Estimate age, gender and ethnicity from faces and pedestrian images; train and evaluate models.

    Records go to stdout; progress bars, summaries, warnings and errors to stderr."""


def user_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AgeGenderError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper
