"""Files kdrun writes: never through a link a run folder, an output folder or a cache holds."""

import logging
import os
from pathlib import Path

import pytest

from kdrun.files import LogFileHandler, atomic_open, atomic_path, file_mode, open_append, write_atomic


def _trap(folder: Path, name: str, outside: Path) -> Path:
    """A link ``folder/name`` to ``outside`` (a file that must stay as it is)."""
    outside.write_text("precious")
    link = folder / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    return link


def test_write_atomic_replaces_a_link_instead_of_writing_through_it(tmp_path):
    work, outside = tmp_path / "work", tmp_path / "outside.txt"
    link = _trap(work, "results.md", outside)
    write_atomic(link, "new")
    assert outside.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "new"
    assert (link.stat().st_mode & 0o777) == file_mode()
    write_atomic(work / "b.bin", b"\x00\x01", fsync=True)
    assert (work / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in work.iterdir()) == ["b.bin", "results.md"]  # no temporary left


def test_atomic_writers_leave_the_target_alone_on_error(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.pt"]
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.pt.") and tmp.stat().st_size == 0
        tmp.write_text("new")
    with atomic_open(tmp_path / "t.csv", "w", newline="") as handle:
        handle.write("a,b\r\n")
    assert target.read_text() == "new" and (tmp_path / "t.csv").read_bytes() == b"a,b\r\n"


def test_a_fixed_temporary_name_link_is_not_followed(tmp_path):
    """A link planted where a writer with a fixed temporary name would write (``.x.tmp``)."""
    outside = tmp_path / "outside.txt"
    for name in (".MODEL_CARD.md.tmp", ".student.torchscript.pt.tmp"):
        _trap(tmp_path / "export", name, outside)
        write_atomic(tmp_path / "export" / name.removeprefix(".").removesuffix(".tmp"), "card")
    assert outside.read_text() == "precious"


def test_logs_are_appended_but_never_through_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    link = _trap(tmp_path / "run", "train.log", outside)
    with pytest.raises(OSError):
        open_append(link)
    with pytest.raises(OSError):
        LogFileHandler(str(link))
    log = tmp_path / "run" / "ok.log"
    for line in ("a\n", "b\n"):
        with open_append(log) as handle:
            handle.write(line)
    handler = LogFileHandler(str(log))
    handler.emit(logging.LogRecord("x", logging.INFO, "", 0, "c", None, None))
    handler.close()
    assert log.read_text() == "a\nb\nc\n" and outside.read_text() == "precious"
