"""`kdrun cache clear` deletes only kdrun's own entries: a folder a user names is not proof."""

import json
import os
from pathlib import Path

import pytest

from kdrun.cache import Cache
from kdrun.cache.store import DIGEST
from kdrun.cli import main

MARKER = ".kdrun-cache"  # the cache-root marker's name, as docs/cli/cache.md gives it


def _build(cache: Cache, name: str) -> Path:
    entry, _ = cache.get_or_build(
        "teacher", name, {"model": {"name": name}}, lambda d: (d / "w").write_bytes(b"w")
    )
    return entry


def _clear(root: Path, *extra: str) -> int:
    try:
        main(["cache", "clear", "--all", "--cache-dir", str(root), *extra])
    except SystemExit as exit_info:
        return int(exit_info.code)
    return 0


def test_clear_all_on_an_output_root_deletes_nothing(tmp_path, capsys):
    """Given the output root instead of its cache, clear --all deleted every run and notes/."""
    root = tmp_path / "outputs"
    run = root / "runs" / "2026-01-01_00-00-00"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"status": "ok"}))
    (root / "notes").mkdir()
    (root / "notes" / "ideas.md").write_text("precious")
    entry = _build(Cache(root / "cache"), "cnn")
    assert _clear(root) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"not a kdrun cache (no {MARKER} in it), nothing removed" in err, err
    assert f"the cache under it is {root / 'cache'}" in err
    assert (run / "results.json").is_file() and (root / "notes" / "ideas.md").read_text() == "precious"
    assert entry.is_dir()
    assert _clear(root / "cache") == 0 and not entry.exists()  # the cache itself is cleared


def test_clear_keeps_what_carries_no_entry_marker(tmp_path, capsys):
    root = tmp_path / "cache"
    cache = Cache(root)
    entries = [_build(cache, name) for name in ("cnn", "mlp")]
    (root / "notes").mkdir()  # a folder a user put there
    (root / "notes" / "todo").mkdir()
    (root / "notes" / "todo" / "list.txt").write_text("precious")
    outside = tmp_path / "elsewhere"
    (outside / "big-000000000000").mkdir(parents=True)
    (outside / "big-000000000000" / DIGEST).write_text("{}")
    (root / "teacher" / "big-000000000000").symlink_to(outside / "big-000000000000")  # a link is no entry
    (root / "linked").symlink_to(outside)
    locked = _build(cache, "locked")
    Path(f"{locked}.lock").unlink(missing_ok=True)
    Path(f"{locked}.lock").symlink_to(outside / "big-000000000000" / DIGEST)  # FileLock would follow it
    assert _clear(root) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"kept notes/todo: not a kdrun cache entry (no {DIGEST})" in out, out
    assert "kept teacher/big-000000000000: not a kdrun cache entry" in out
    assert f"kept teacher/{locked.name}: its lock file cannot be opened" in out
    assert "2 entries removed" in out and locked.is_dir()
    assert not any(e.exists() for e in entries)
    assert (root / "notes" / "todo" / "list.txt").read_text() == "precious"
    assert (outside / "big-000000000000" / DIGEST).is_file()


def test_the_cache_marks_itself_and_moved_aside_entries_stay_clearable(tmp_path, capsys):
    root = tmp_path / "cache"
    entry = _build(Cache(root), "cnn")
    assert (root / MARKER).is_file()
    (root / MARKER).unlink()  # a cache made before the marker: its next run marks it
    os.remove(entry / DIGEST)  # ... and an entry that lost its digest is moved aside, still marked
    _build(Cache(root), "cnn")
    assert (root / MARKER).is_file()
    (aside,) = (root / "teacher").glob("cnn-*.corrupt-*")
    assert (aside / DIGEST).is_file()
    assert _clear(root) == 0 and not any((root / "teacher").iterdir())


@pytest.mark.parametrize("make", ["file", "missing"])
def test_clear_on_a_file_or_a_missing_folder_is_one_line(tmp_path, capsys, make):
    target = tmp_path / "x"
    if make == "file":
        target.write_text("precious")
    assert _clear(target) == 2
    assert "not a kdrun cache" in capsys.readouterr().err
    assert make == "missing" or target.read_text() == "precious"
