"""A content-addressed store for trained artefacts (teachers, scratch baselines).

An entry is ``<root>/<kind>/<name>-<hash>/``, where the hash covers everything that determines
the artefact. Entries are built in a temporary folder and renamed into place, so a crash never
leaves a half-written entry behind; a file lock makes parallel jobs wait for one builder.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

CACHE_VERSION = 2  # bump when a change to training makes old entries wrong


def cache_key(spec: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able spec."""
    blob = json.dumps({"cache_version": CACHE_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class Cache:
    """Get an entry, or build it exactly once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, name: str, spec: dict[str, Any]) -> Path:
        return self.root / kind / f"{name}-{cache_key(spec)}"

    def get_or_build(
        self, kind: str, name: str, spec: dict[str, Any], build: Callable[[Path], None]
    ) -> tuple[Path, bool]:
        """Return ``(entry folder, was_cached)``; ``build(tmp_dir)`` fills a new entry."""
        final = self.path(kind, name, spec)
        if final.is_dir():
            os.utime(final)  # "last used", for `kdrun cache ls` and `clear --older-than`
            return final, True
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if final.is_dir():  # another job built it while we waited
                return final, True
            # A builder killed mid-build (SIGKILL) left its temp folder; holding the lock, we are
            # the only builder of this entry, so every temp folder of it is stale.
            for stale in final.parent.glob(f".tmp-{final.name}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
            tmp.mkdir()
            try:
                build(tmp)
                (tmp / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return final, False
