"""Every file kdrun writes goes through here: never through a link, never half-written.

A file is written to a new temporary file created exclusively in the target's folder (a random
name, ``O_CREAT | O_EXCL | O_NOFOLLOW``), then renamed over the target with ``os.replace``: a link
at the target is replaced, not followed, and a reader sees the old file or the new one. Logs are
appended through ``open_append``, which refuses a link. Files get the mode of any file the user
creates (0644 under umask 022). This is what pip and git do.
"""

import io
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from kdrun.errors import KdrunConfigError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # absent on Windows, where links need privileges


def file_mode() -> int:
    """What ``open()`` would give a new file under the current umask (0644 under 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def as_user_file(path: Path | str) -> None:
    """Give ``path`` the usual mode: ``mkstemp`` and safetensors create files 0600."""
    os.chmod(path, file_mode())


def _new_temp(path: Path) -> tuple[int, Path]:
    """A new, empty file next to ``path`` that no one else has opened: (descriptor, its path)."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    while True:
        # `.tmp-` first, so a folder's leftovers are one glob; the suffix kept for writers that
        # infer the format from it (savefig).
        tmp = path.with_name(f".tmp-{path.stem}-{secrets.token_hex(6)}{path.suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # 48 random bits taken: draw again
            continue


@contextmanager
def atomic_path(path: Path | str, fsync: bool = False) -> Iterator[Path]:
    """Yield the path of a new temporary file for a writer that takes a path (``save_file``,
    ``savefig``, ``torch.jit.save``); when the block ends without error it replaces ``path``.
    On error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = _new_temp(path)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        as_user_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(
    path: Path | str, mode: str = "w", fsync: bool = False, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Yield a file object (``mode`` ``"w"`` or ``"wb"``) whose content replaces ``path`` when the
    block ends without error (``torch.save``, ``csv.writer``, ``json.dump``)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode {mode!r}; allowed: w, wb")
    path = Path(path)
    fd, tmp = _new_temp(path)
    try:
        raw = os.fdopen(fd, "wb")
        with raw if mode == "wb" else io.TextIOWrapper(raw, encoding="utf-8", newline=newline) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(raw.fileno())
        as_user_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path | str, data: bytes | str, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8), never through a link."""
    with atomic_open(path, "wb", fsync=fsync) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def open_append(path: Path | str) -> IO[str]:
    """``path`` opened to append text (created if absent); ``OSError`` (ELOOP) if it is a link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    return os.fdopen(os.open(path, flags, 0o666), "a", encoding="utf-8")


def refuse_links(folder: Path | str, key: str) -> None:
    """``KdrunConfigError`` when ``folder`` holds a symbolic link anywhere below it.

    kdrun's own writers replace a link; Hydra, Lightning and the loggers write through one. A
    folder that a run writes into (a run folder to resume, ``hydra.run.dir``, ``regress --out``)
    must therefore hold none: a link there came from elsewhere, and would send a write outside.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for parent, dirs, names in os.walk(folder):  # walk does not enter linked folders
        for name in sorted(dirs + names):
            path = Path(parent) / name
            if path.is_symlink():
                raise KdrunConfigError(
                    key,
                    str(folder),
                    f"holds a symbolic link, {path} -> {os.readlink(path)}; kdrun writes into this "
                    "folder and never through a link: remove the link or choose another folder",
                )


class LogFileHandler(logging.FileHandler):
    """``logging.FileHandler`` that appends through ``open_append``: a link at the log is refused."""

    def _open(self) -> IO[str]:
        return open_append(self.baseFilename)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
