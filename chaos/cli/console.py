"""The CLI's two consoles and how it prints: a plain line, a warning, a failure as one line.

Every command prints through these, so a run's output and its errors go to the same streams
whichever module of the CLI writes them.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from chaos.errors import ChaosError

out = Console()
err = Console(stderr=True)


def fail_with(exc: ChaosError) -> NoReturn:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def say(line: str) -> None:
    out.print(line, markup=False, highlight=False, soft_wrap=True)


def warn_line(line: str) -> None:
    err.print(line, markup=False, highlight=False, soft_wrap=True)
