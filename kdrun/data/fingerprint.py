"""What a streamed set's fingerprint reads of its files (``dataset.fingerprint``).

``stat`` (default): each file's path, size and modification time — no file is read, so a start on
a million images costs a million ``stat`` calls. A file replaced by another of the same size
with its modification time restored keeps the fingerprint, and a cached teacher or statistics
entry is then reused for data it was not made from. ``content``: each file's path and the
SHA-256 of its bytes — every byte is read once per run; see docs/cli/train.md for the cost.
"""

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

CHUNK = 1 << 20


def add_files(digest: "hashlib._Hash", paths: Sequence[Path], how: str, known: dict[Path, str]) -> None:
    """Add each file in ``paths`` to ``digest``, as ``how`` says; ``known`` keeps content hashes
    (path -> hex) so that a file read once is not read again for the next key."""
    for path in paths:
        if how == "content":
            if path not in known:
                known[path] = content_hash(path)
            digest.update(f"{path}\0{known[path]}\n".encode())
        else:
            info = os.stat(path)
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())


def content_hash(path: Path) -> str:
    """The SHA-256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
