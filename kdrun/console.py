"""The one rich console kdrun prints through (colour only on a terminal).

Text kdrun prints holds values, paths and folder names that came from users, so the consoles
read no markup: ``[red]5[/red]`` prints as typed and ``[/x]`` cannot raise. kdrun's own colours
are ``rich.text.Text`` styles (``styled``). ``plain`` shows control characters as escapes.
"""

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NoReturn

from rich.console import Console, ConsoleRenderable
from rich.segment import ControlType, Segment
from rich.text import Text

from kdrun.files import open_append

# Off a terminal rich assumes 80 columns, which folds the results table; logs can be wider.
_width = None if sys.stdout.isatty() else 160
console = Console(highlight=False, markup=False, width=_width)
err_console = Console(stderr=True, highlight=False, markup=False, width=_width)

EXIT_BAD_INPUT = 2
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def styled(label: str, style: str, rest: str = "") -> Text:
    """``label`` in ``style`` followed by ``rest`` on the same line: no markup read in either,
    control characters in ``rest`` shown as escapes (``plain``)."""
    return Text.assemble((label, style), plain(rest))


def plain(value: object) -> str:
    """``value`` as one line of text a terminal shows as it is: control characters (ESC, BEL, CR,
    newline), and other unprintable ones such as bidirectional overrides, written as escapes."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


# On a terminal, a live progress bar is redrawn around each printed line; these invisible marks
# (written only to terminals, taken out before the terminal sees them) tell the log which text
# was printed, so a log file gets the lines and none of the bar's frames.
_PRINTED, _END = "\x1b]kdrun;printed\x07", "\x1b]kdrun;end\x07"
_MARKED = re.compile(re.escape(_PRINTED) + "(.*?)" + re.escape(_END), re.DOTALL)


class _Mark:
    def __init__(self, text: str) -> None:
        self.segment = Segment(text, None, [(ControlType.BELL,)])  # a control: no width, terminals only

    def __rich_console__(self, console: Console, options: object) -> Iterator[Segment]:
        yield self.segment


class _MarkPrinted:
    """A rich render hook, run before a live display's: marks what ``print`` was asked to print."""

    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list:
        return [_Mark(_PRINTED), *renderables, _Mark(_END)]


class _Tee:
    """A text stream that writes to the terminal (unless ``echo`` is off) and, without colour
    codes or progress-bar frames, to a log file."""

    def __init__(self, stream: IO[str], log: IO[str], echo: bool = True) -> None:
        self.stream, self.log, self.echo = stream, log, echo

    def write(self, text: str) -> int:
        printed = "".join(_MARKED.findall(text)) if _PRINTED in text else text.replace("\r", "")
        self.log.write(_ANSI.sub("", printed))
        self.log.flush()
        text = text.replace(_PRINTED, "").replace(_END, "")
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
    with open_append(path) as log:
        saved = [(c, c._file) for c in (console, err_console)]  # None: follow sys.stdout/stderr
        for c, _ in saved:
            c.file = _Tee(c.file, log, echo)
            c._render_hooks.insert(0, _MarkPrinted())  # before a live display's hook, if one runs
        try:
            yield
        finally:
            for c, file in saved:
                c.file = file
                c._render_hooks[:] = [h for h in c._render_hooks if not isinstance(h, _MarkPrinted)]


def fail(message: str) -> NoReturn:
    """Print one error line and exit with status 2 (bad input)."""
    err_console.print(styled("error:", "bold red", f" {message}"), soft_wrap=True)
    sys.exit(EXIT_BAD_INPUT)


EXIT_FAILED = 1


def fail_run(message: str) -> NoReturn:
    """Print one error line and exit with status 1 (the input was fine; a check failed)."""
    err_console.print(styled("error:", "bold red", f" {message}"), soft_wrap=True)
    sys.exit(EXIT_FAILED)
