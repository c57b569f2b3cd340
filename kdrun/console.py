"""The one rich console kdrun prints through (colour only on a terminal)."""

import sys
from typing import NoReturn

from rich.console import Console

# Off a terminal rich assumes 80 columns, which folds the results table; logs can be wider.
_width = None if sys.stdout.isatty() else 160
console = Console(highlight=False, width=_width)
err_console = Console(stderr=True, highlight=False, width=_width)

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print one error line and exit with status 2 (bad input)."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(EXIT_BAD_INPUT)


EXIT_FAILED = 1


def fail_run(message: str) -> NoReturn:
    """Print one error line and exit with status 1 (the input was fine; a check failed)."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(EXIT_FAILED)
