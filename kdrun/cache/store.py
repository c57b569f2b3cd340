"""A content-addressed store for trained artefacts (teachers, scratch baselines).

An entry is ``<root>/<kind>/<name>-<hash>/``, where the hash covers everything that determines
the artefact. Entries are built in a temporary folder and renamed into place, so a crash never
leaves a half-written entry behind; a file lock makes parallel jobs wait for one builder.

Each entry ends with ``digest.json``, the sha256 of every other file in it, written last. A read
verifies it: an entry whose files were altered, truncated or replaced (or one without a digest)
is moved aside with one line and built again, so what the cache hands out is what was built.
"""

import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from kdrun.console import console
from kdrun.files import write_atomic
from kdrun.runtime import nodes

CACHE_VERSION = 2  # bump when a change to training makes old entries wrong
DIGEST = "digest.json"  # also what marks a folder as an entry: `kdrun cache clear` deletes no other
# What marks a folder as a kdrun cache: written by every run that uses it, so a cache made before
# the marker existed gets it on its next run. `kdrun cache clear` deletes nothing in a folder without.
MARKER = ".kdrun-cache"


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
        """Return ``(entry folder, was_cached)``; ``build(tmp_dir)`` fills a new entry.

        In a run of several launched processes (``kdrun.runtime.nodes``) rank 0 alone gets or builds the
        entry while the others wait; then they read it.
        """
        final = self.path(kind, name, spec)
        self.mark()

        def read() -> tuple[Path, bool]:
            problem = verify(final) if final.is_dir() else "was not built by rank 0"
            if problem is not None:
                raise RuntimeError(f"cache: {final} {problem}")
            return final, True

        return nodes.rank_zero_first(lambda: self._get_or_build(final, spec, build), read)

    def _get_or_build(
        self, final: Path, spec: dict[str, Any], build: Callable[[Path], None]
    ) -> tuple[Path, bool]:
        if final.is_dir() and verify(final) is None:
            os.utime(final)  # "last used", for `kdrun cache ls` and `clear --older-than`
            return final, True
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if final.is_dir():  # another job built it while we waited, or it failed its check
                problem = verify(final)
                if problem is None:
                    return final, True
                self.discard(final, problem)
            # A builder killed mid-build (SIGKILL) left its temp folder; holding the lock, we are
            # the only builder of this entry, so every temp folder of it is stale.
            for stale in final.parent.glob(f".tmp-{final.name}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
            tmp.mkdir()
            try:
                build(tmp)
                write_atomic(tmp / "spec.json", json.dumps(spec, indent=2, sort_keys=True, default=str))
                write_atomic(tmp / DIGEST, json.dumps({"sha256": _digests(tmp)}, indent=2, sort_keys=True))
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return final, False

    def mark(self) -> None:
        """Write the cache-root marker if it is not there (``MARKER``)."""
        if not (self.root / MARKER).is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(
                self.root / MARKER,
                "kdrun cache: `kdrun cache clear` removes only <kind>/<entry>/ folders with a digest.json\n",
            )

    def discard(self, entry: Path, problem: str) -> Path:
        """Move a bad entry aside (``<entry>.corrupt-<time>``, kept for inspection), with one line.
        It keeps an entry's marker (a ``digest.json``), so ``kdrun cache clear`` may remove it."""
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        aside = entry.with_name(f"{entry.name}.corrupt-{stamp}")
        os.replace(entry, aside)
        if not (aside / DIGEST).is_file() and not (aside / DIGEST).is_symlink():
            write_atomic(aside / DIGEST, json.dumps({"moved_aside": problem}))
        console.print(f"cache: {entry} {problem}; moved to {aside.name}, building it again", markup=False)
        return aside


def verify(entry: Path) -> str | None:
    """``None`` when every file of ``entry`` matches its ``digest.json``; else what is wrong."""
    try:
        recorded = json.loads((entry / DIGEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"has no readable {DIGEST}"
    try:
        found = _digests(entry)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if found != recorded:
        changed = sorted(f for f in found.keys() | recorded.keys() if found.get(f) != recorded.get(f))
        return f"does not match its {DIGEST} ({', '.join(changed[:3])})"
    return None


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` but the digest itself, read in chunks."""
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name != DIGEST:
            with open(path, "rb") as handle:
                digests[name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return digests
