"""The one rich console kdrun prints through (colour only on a terminal)."""

import sys

from rich.console import Console

# Off a terminal rich assumes 80 columns, which folds the results table; logs can be wider.
_width = None if sys.stdout.isatty() else 160
console = Console(highlight=False, width=_width)
err_console = Console(stderr=True, highlight=False, width=_width)
