"""``kdrun cache [ls|verify|clear]``: what the artefact cache holds, its integrity, removing entries.

An entry is ``<cache dir>/<kind>/<name>-<data set>-<hash>/`` (teachers, scratch baselines, teacher
logits, ...; ``<name>-<hash>/`` when written by an older kdrun) with its ``spec.json`` (what produced
it) and ``about.json`` (the words of its name). "Last used" is the entry folder's modification time,
which a cache hit refreshes. ``verify`` checks each entry's files against its ``digest.json``.
"""

import argparse
import json
import re
import shutil
import sys
import time
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from rich.table import Table

from kdrun.cache.store import ABOUT, DIGEST, MARKER
from kdrun.commands import COMMANDS
from kdrun.console import console
from kdrun.errors import KdrunConfigError

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def entries(root: Path) -> list[dict[str, Any]]:
    """Every finished entry under ``root`` (temporary and moved-aside folders left out)."""
    if not root.is_dir():
        return []
    found = []
    for kind in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for entry in sorted(p for p in kind.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = [f for f in entry.rglob("*") if f.is_file()]
            spec_file = entry / "spec.json"
            spec, about = _json(spec_file), _json(entry / ABOUT)
            found.append(
                {
                    "kind": kind.name,
                    "name": entry.name,
                    "path": entry,
                    "bytes": sum(f.stat().st_size for f in files),
                    "created": (spec_file if spec_file.is_file() else entry).stat().st_mtime,
                    "used": entry.stat().st_mtime,
                    "origin": "moved aside: failed its digest check"
                    if ".corrupt-" in entry.name
                    else origin(spec, about),
                }
            )
    return found


def _json(path: Path) -> dict[str, Any]:
    """A JSON object file, or ``{}`` when it is missing, unreadable or not an object."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def origin(spec: dict[str, Any], about: dict[str, Any] | None = None) -> str:
    """What produced an entry, in a few words, from its spec.json (and about.json: the data set
    by name rather than by its fingerprint)."""
    model = spec.get("model")
    parts = []
    if isinstance(model, dict) and model.get("name"):
        parts.append(str(model["name"]))
    data = (about or {}).get("data")
    named = isinstance(data, str) and data != ""
    fields = (("epochs", "epochs"), ("seed", "seed"), ("views", "views"), ("topk", "top-k"))
    for key, label in (*fields, ("teachers", "teachers"), ("data", "data")):
        if key in spec and not isinstance(spec[key], dict | list) and not (key == "data" and named):
            parts.append(f"{label} {str(spec[key])[:12]}")
    if named:
        parts.append(f"data {data[:40]}")
    return ", ".join(parts) or "-"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([dhms])", text.strip())
    if not match:
        raise KdrunConfigError("--older-than", text, "a number and a unit: 30d, 12h, 90m or 45s")
    return float(match[1]) * UNITS[match[2]]


def listing(root: Path, found: list[dict[str, Any]]) -> Table:
    table = Table(title=f"kdrun cache: {root}")
    for column in ("kind", "name", "size", "created", "last used", "made from"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for e in found:
        table.add_row(
            e["kind"], e["name"], human_bytes(e["bytes"]), _when(e["created"]), _when(e["used"]), e["origin"]
        )
    return table


def verify_all(root: Path) -> list[tuple[dict[str, Any], str | None]]:
    """Each entry with ``None`` when its files match its digest, else what is wrong."""
    from kdrun.cache.store import verify

    return [(e, verify(e["path"])) for e in entries(root) if ".corrupt-" not in e["name"]]


def clear(
    root: Path, patterns: list[str], older_than: float | None, everything: bool = False
) -> list[dict[str, Any]]:
    """Remove the entries matching any ``kind/name`` pattern and not used for ``older_than`` s.

    Only in a folder that carries the cache-root marker, and only folders that carry an entry's
    marker (its ``digest.json``): anything else is listed as not a kdrun cache entry and kept. An
    entry another process is building or reading under its lock is left alone.
    """
    check_root(root)
    now = time.time()
    removed = []
    for e in entries(root):
        label = f"{e['kind']}/{e['name']}"
        if patterns and not any(fnmatch(label, p) or fnmatch(label, p.rstrip("/") + "/*") for p in patterns):
            continue
        if older_than is not None and now - e["used"] < older_than:
            continue
        if not (patterns or older_than is not None or everything):
            continue
        if not is_entry(e["path"]):
            console.print(f"kept {label}: not a kdrun cache entry (no {DIGEST})", markup=False)
            continue
        try:
            with FileLock(str(e["path"]) + ".lock", timeout=0):
                shutil.rmtree(e["path"])
        except Timeout:
            console.print(f"kept {label}: in use by another process", markup=False)
            continue
        except OSError as err:  # its lock is a link (FileLock refuses one) or cannot be made
            console.print(
                f"kept {label}: its lock file cannot be opened ({err.strerror or err})", markup=False
            )
            continue
        Path(str(e["path"]) + ".lock").unlink(missing_ok=True)
        removed.append(e)
    return removed


def check_root(root: Path) -> None:
    """``KdrunConfigError`` unless ``root`` carries the cache-root marker: a folder a user names is
    not proof that kdrun made it (an output root holds runs, and maybe other work)."""
    if root.is_dir() and not root.is_symlink() and (root / MARKER).is_file():
        return
    inside = [p for p in (root / "cache",) if (p / MARKER).is_file()]
    hint = f"; the cache under it is {inside[0]}" if inside else ""
    raise KdrunConfigError(
        "--cache-dir",
        str(root),
        f"not a kdrun cache (no {MARKER} in it), nothing removed{hint}. A cache made before kdrun "
        f"marked its caches gets the marker on its next run (docs/cli/cache.md)",
    )


def is_entry(path: Path) -> bool:
    """A real folder (no link on the way) that carries an entry's ``digest.json``."""
    digest = path / DIGEST
    links = path.is_symlink() or path.parent.is_symlink() or digest.is_symlink()
    return not links and path.is_dir() and digest.is_file()


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="kdrun cache",
        description=COMMANDS["cache"],
        epilog="Examples: kdrun cache ls · kdrun cache clear --older-than 30d · "
        "kdrun cache clear 'teacher/resnet50-*' · kdrun cache clear logits",
    )
    parser.add_argument(
        "action", nargs="?", choices=("ls", "verify", "clear"), default="ls", help="default: ls"
    )
    parser.add_argument("patterns", nargs="*", help="clear: entries as KIND or KIND/NAME (wildcards allowed)")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path("outputs/cache"), help="the cache (default: %(default)s)"
    )
    parser.add_argument("--older-than", help="clear: only entries not used for this long (30d, 12h, 90m)")
    parser.add_argument("--all", action="store_true", help="clear: every entry")
    options = parser.parse_args(args)
    root = options.cache_dir
    if options.action == "ls":
        found = entries(root)
        console.print(listing(root, found))
        total = sum(e["bytes"] for e in found)
        console.print(f"{len(found)} entries, {human_bytes(total)} in all", markup=False)
        return
    if options.action == "verify":
        checked = verify_all(root)
        bad = [(e, problem) for e, problem in checked if problem is not None]
        for e, problem in bad:
            console.print(f"bad: {e['kind']}/{e['name']} {problem}", markup=False)
        console.print(
            f"{len(checked)} entries verified, {len(bad)} bad"
            + (" (the next run that needs one moves it aside and builds it again)" if bad else ""),
            markup=False,
        )
        if bad:
            sys.exit(1)
        return
    older = parse_age(options.older_than) if options.older_than else None
    if not (options.patterns or older is not None or options.all):
        raise KdrunConfigError(
            "kdrun cache clear", "", "name what to clear: KIND[/NAME], --older-than AGE or --all"
        )
    removed = clear(root, options.patterns, older, options.all)
    freed = sum(e["bytes"] for e in removed)
    for e in removed:
        console.print(f"removed {e['kind']}/{e['name']} ({human_bytes(e['bytes'])})", markup=False)
    console.print(f"{len(removed)} entries removed, {human_bytes(freed)} freed", markup=False)
