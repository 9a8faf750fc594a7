"""The ``scalelab`` command line (typer + rich).

Each group of commands lives in its own module here and registers itself on :data:`app`
through a ``register(app)`` function; :func:`main` turns ``ValueError`` and
``FileNotFoundError`` into one line on stderr and exit status 2 (docs/design.md, Conventions).
Command modules import heavy libraries inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import warnings

import typer

from .. import __version__
from ..errors import ScalelabWarning

_default_showwarning = warnings.showwarning

app = typer.Typer(
    name="scalelab",
    help="Training neural networks at scale: LoRA+, Edge-of-Chaos init, Stable ResNet, "
    "Depth-muP, stochastic depth, pruning at init, diagnostics and reproductions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Command modules, in the order their commands appear in --help.
_COMMAND_MODULES = (
    "finetune",
    "predict",
    "eoc",
    "prune",
    "prune_data",
    "certify",
    "diagnose",
    "reproduce",
    "ntk",
    "lgi",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scalelab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """scalelab: every command has --help; numbers go to stdout, messages to stderr."""


for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__name__}._{_name}").register(app)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """scalelab's own warnings as one line ``warning: ...`` on stderr; others as usual."""
    if issubclass(category, ScalelabWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scalelab`` console script."""
    command = typer.main.get_command(app)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            warnings.simplefilter("default", ScalelabWarning)  # shown once per place
            rv = command.main(args=argv, prog_name="scalelab", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        return 130
    except (ValueError, FileNotFoundError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        typer.echo(f"error: {msg}", err=True)
        return 2
    except Exception as e:
        # Usage errors (click's, or typer's vendored click): print usage, keep their code (2).
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return e.exit_code
        raise
    return rv if isinstance(rv, int) else 0
