"""`kdrun cache clear`: by kind/name pattern and by age, never an entry another process holds."""

import json
import os
import time

import pytest
from filelock import FileLock

from kdrun.commands.cache import clear, entries, parse_age
from kdrun.errors import KdrunConfigError


def _entry(root, kind, name, age_s=0.0):
    folder = root / kind / name
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"model": {"name": name.split("-")[0]}, "epochs": 3}))
    (folder / "model.safetensors").write_bytes(b"x" * 1000)
    (folder / "digest.json").write_text("{}")  # the entry's marker
    (root / ".kdrun-cache").write_text("")  # the cache's
    stamp = time.time() - age_s
    os.utime(folder, (stamp, stamp))
    return folder


def test_clear_by_pattern_and_age_keeps_the_rest(tmp_path):
    old = _entry(tmp_path, "teacher", "resnet50-aaa", age_s=40 * 86400)
    new = _entry(tmp_path, "teacher", "cnn-bbb")
    base = _entry(tmp_path, "baseline", "mlp-ccc", age_s=40 * 86400)
    (tmp_path / "teacher" / ".tmp-cnn-ddd-1").mkdir()  # a build in progress is not an entry
    assert {e["name"] for e in entries(tmp_path)} == {"resnet50-aaa", "cnn-bbb", "mlp-ccc"}
    assert [e["name"] for e in clear(tmp_path, ["teacher"], parse_age("30d"))] == ["resnet50-aaa"]
    assert not old.exists() and new.exists() and base.exists()
    assert [e["name"] for e in clear(tmp_path, ["baseline/mlp-*"], None)] == ["mlp-ccc"]
    marker = len((new / "digest.json").read_bytes())
    assert [e["bytes"] for e in entries(tmp_path)] == [1000 + len((new / "spec.json").read_bytes()) + marker]


def test_clear_leaves_an_entry_in_use(tmp_path):
    entry = _entry(tmp_path, "teacher", "cnn-bbb")
    with FileLock(str(entry) + ".lock"):
        assert clear(tmp_path, [], None, everything=True) == []
    assert entry.exists()


def test_bad_age_names_the_option():
    with pytest.raises(KdrunConfigError, match="--older-than"):
        parse_age("30 days")


def test_verify_finds_an_entry_whose_files_changed(tmp_path, capsys):
    from kdrun.cache import Cache
    from kdrun.commands.cache import main

    cache = Cache(tmp_path)
    for name in ("cnn", "mlp"):
        cache.get_or_build(
            "teacher", name, {"model": {"name": name}}, lambda d: (d / "model.safetensors").write_bytes(b"w")
        )
    main(["verify", "--cache-dir", str(tmp_path)])
    assert "2 entries verified, 0 bad" in capsys.readouterr().out
    (next(p for p in (tmp_path / "teacher").glob("mlp-*") if p.is_dir()) / "model.safetensors").write_bytes(
        b"x"
    )
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert exit_.value.code == 1 and "bad: teacher/mlp-" in out and "model.safetensors" in out
    assert "2 entries verified, 1 bad" in out
