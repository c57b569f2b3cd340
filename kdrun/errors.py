"""The one exception type kdrun raises for bad input."""

import os
import stat
from pathlib import Path


class KdrunConfigError(ValueError):
    """Bad user input: the message names the key, the bad value and what is allowed.

    The CLI prints it on one line and exits with status 2, before any training.
    """

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")


class DataNotFound(KdrunConfigError):
    """The data set's files are not on this machine (and were not downloaded).

    Bad input like any other for ``kdrun train`` (one line, exit 2); ``kdrun regress`` reports a
    recipe on such data as skipped, with this line as the reason, never as passed.
    """


def require_file(key: str, path: str | Path) -> Path:
    """``path`` (``~`` expanded) when it is a regular file, or a line saying what it is instead:
    missing, a folder, or a device, FIFO or socket (``/dev/zero`` would be read forever)."""
    path = Path(str(path)).expanduser()
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise KdrunConfigError(key, str(path), "file does not exist") from None
    except OSError as err:
        raise KdrunConfigError(key, str(path), f"cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise KdrunConfigError(key, str(path), "not a regular file (a folder)")
    if not stat.S_ISREG(mode):
        raise KdrunConfigError(key, str(path), "not a regular file (a device, FIFO or socket)")
    return path
