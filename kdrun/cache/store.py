"""A content-addressed store for trained artefacts (teachers, scratch baselines).

An entry is ``<root>/<kind>/<name>-<about>-<hash>/`` (``teacher/cnn-fashion_mnist-1a2b3c4d5e6f``),
where the hash covers everything that determines the artefact and the words before it are for
people: each made a safe piece of a folder name (``safe_part``). An entry written under the
older ``<name>-<hash>`` is still found: same hash, same artefact. Entries are built in a
temporary folder and renamed into place, so a crash never leaves a half-written entry behind; a
file lock makes parallel jobs wait for one builder.

Each entry ends with ``digest.json``, the sha256 of every other file in it, written last. A read
verifies it: an entry whose files were altered, truncated or replaced (or one without a digest)
is moved aside with one line and built again, so what the cache hands out is what was built.
"""

import hashlib
import json
import os
import re
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
ABOUT = "about.json"  # the readable words of an entry's name, by what they say (data set, teacher)
PART_MAX = 40  # characters of one readable word of an entry name (a model or data set name)


def cache_key(spec: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able spec."""
    blob = json.dumps({"cache_version": CACHE_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class Cache:
    """Get an entry, or build it exactly once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, name: str, spec: dict[str, Any], about: dict[str, str] | None = None) -> Path:
        """Where an entry is built: ``<kind>/<name>-<about...>-<hash>``, every word made safe."""
        words = [safe_part(w) for w in (name, *(about or {}).values()) if w]
        return self.root / kind / "-".join([*words, cache_key(spec)])

    def find(
        self, kind: str, name: str, spec: dict[str, Any], about: dict[str, str] | None = None, was: str = ""
    ) -> Path:
        """The entry's folder as it exists: under its name, else under the older ``<was>-<hash>``
        (``was``: ``name`` unless given; when that is one plain folder name), else where it would
        be built."""
        final = self.path(kind, name, spec, about)
        older = self._older(kind, was or name, spec)
        return older if not final.is_dir() and older is not None and older.is_dir() else final

    def _older(self, kind: str, name: str, spec: dict[str, Any]) -> Path | None:
        """Where an entry was built before entry names were readable; ``None`` when that name was
        not one plain folder name (a ``/``, a leading dot): never followed out of ``<kind>/``."""
        older = f"{name}-{cache_key(spec)}"
        plain = "/" not in older and "\\" not in older and "\0" not in older and not older.startswith(".")
        return self.root / kind / older if plain else None

    def get_or_build(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        build: Callable[[Path], None],
        about: dict[str, str] | None = None,
        was: str = "",
    ) -> tuple[Path, bool]:
        """Return ``(entry folder, was_cached)``; ``build(tmp_dir)`` fills a new entry.

        ``about``: words for people after ``name`` in the folder's name (``{"data": "mnist"}``),
        also kept in the entry's ``about.json`` for ``kdrun cache ls``; each must follow from
        ``spec``, or runs that should share the entry would not find it.
        ``was``: the name the entry had before names were readable, when not ``name``.
        In a run of several launched processes (``kdrun.runtime.nodes``) rank 0 alone gets or builds the
        entry while the others wait; then they read it.
        """
        final = self.path(kind, name, spec, about)
        self.mark()

        def read() -> tuple[Path, bool]:
            found = self.find(kind, name, spec, about, was)
            problem = verify(found) if found.is_dir() else "was not built by rank 0"
            if problem is not None:
                raise RuntimeError(f"cache: {found} {problem}")
            return found, True

        older = self._older(kind, was or name, spec)
        return nodes.rank_zero_first(lambda: self._get_or_build(final, older, spec, build, about or {}), read)

    def _get_or_build(
        self,
        final: Path,
        older: Path | None,
        spec: dict[str, Any],
        build: Callable[[Path], None],
        about: dict[str, str],
    ) -> tuple[Path, bool]:
        # An entry under its older name is used as it is (not renamed: a process of an older kdrun
        # may be reading it); a bad one is left to that name, and this one is built under `final`.
        for entry in (final, older) if older != final else (final,):
            if entry is not None and entry.is_dir() and verify(entry) is None:
                os.utime(entry)  # "last used", for `kdrun cache ls` and `clear --older-than`
                return entry, True
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
                if words := {k: safe_part(v) for k, v in about.items() if v}:
                    write_atomic(tmp / ABOUT, json.dumps(words, indent=2))
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


def safe_part(text: str) -> str:
    """``text`` as one harmless word of a folder name: letters, digits, ``_`` and ``+`` kept, every
    other run of characters one ``_`` (no ``/``, no dot, so no ``..``, no hidden or ``.corrupt-``
    name), at most ``PART_MAX`` characters; ``_`` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9_+]+", "_", text).strip("_")[:PART_MAX] or "_"


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
