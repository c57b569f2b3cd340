"""Values from results.json files written into summary files: as text, never as markup or formulas."""

import html
from typing import Any

from kdrun.console import plain

# A cell a spreadsheet would read as a formula (OWASP's list): written after a quote, as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` for summary.csv: text that starts like a formula gets a leading ``'``."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def md_cell(value: Any) -> str:
    """``value`` for a Markdown table cell: one line, ``|`` escaped, HTML shown as text."""
    return html.escape(plain(value), quote=False).replace("|", "\\|")


def number_text(value: Any) -> str:
    """A number in its shortest form (``4``, ``0.9``); anything else as its text."""
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
