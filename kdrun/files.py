"""File modes: what kdrun writes gets the mode of any file the user creates."""

import os
from pathlib import Path


def file_mode() -> int:
    """What ``open()`` would give a new file under the current umask (0644 under 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def as_user_file(path: Path | str) -> None:
    """Give ``path`` the usual mode: ``mkstemp`` and safetensors create files 0600."""
    os.chmod(path, file_mode())
