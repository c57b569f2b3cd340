"""The one rich console kdrun prints through (colour only on a terminal)."""

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NoReturn

from rich.console import Console

# Off a terminal rich assumes 80 columns, which folds the results table; logs can be wider.
_width = None if sys.stdout.isatty() else 160
console = Console(highlight=False, width=_width)
err_console = Console(stderr=True, highlight=False, width=_width)

EXIT_BAD_INPUT = 2
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _Tee:
    """A text stream that writes to the terminal (unless ``echo`` is off) and, without colour
    codes, to a log file."""

    def __init__(self, stream: IO[str], log: IO[str], echo: bool = True) -> None:
        self.stream, self.log, self.echo = stream, log, echo

    def write(self, text: str) -> int:
        self.log.write(_ANSI.sub("", text))
        self.log.flush()
        return self.stream.write(text) if self.echo else len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


@contextmanager
def console_log(path: Path, echo: bool = True) -> Iterator[None]:
    """Copy everything kdrun prints (both consoles) to ``path`` while the block runs; with
    ``echo`` off, write it only there (a sweep point: its terminal shows one line per point)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        saved = [(c, c._file) for c in (console, err_console)]  # None: follow sys.stdout/stderr
        for c, _ in saved:
            c.file = _Tee(c.file, log, echo)
        try:
            yield
        finally:
            for c, file in saved:
                c.file = file


def fail(message: str) -> NoReturn:
    """Print one error line and exit with status 2 (bad input)."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(EXIT_BAD_INPUT)


EXIT_FAILED = 1


def fail_run(message: str) -> NoReturn:
    """Print one error line and exit with status 1 (the input was fine; a check failed)."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(EXIT_FAILED)
