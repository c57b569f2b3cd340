"""Hostile use of `kdrun regress`: two of them writing into one --out."""

from pathlib import Path

import pytest
from filelock import FileLock

from kdrun.regress import command

RECIPE = """# @package _global_
epochs: 1
regress:
  description: one run
  tier: fast
  seeds: [0]
  expect:
    - teacher.top1 > 0.5
"""


def test_a_second_regress_into_the_same_out_is_refused_with_one_line(tmp_path, monkeypatch, capsys):
    from kdrun.cli import main

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "one.yaml").write_text(RECIPE)
    ran = []
    failed = {"seed0": {"status": "failed", "error": "not run here"}}
    monkeypatch.setattr(command, "_run_recipe", lambda recipe, configs, out: ran.append(recipe) or failed)
    monkeypatch.chdir(tmp_path)
    out = Path("out")
    out.mkdir()
    held = FileLock(out / ".kdrun-regress.lock", timeout=0)  # the first kdrun regress, still running
    with held, pytest.raises(SystemExit) as info:
        main(["regress", "recipes", "--out", "out"])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "another kdrun regress is writing into this folder" in lines[0], lines
    assert ran == [] and not (out / "regress.json").exists()
    # Once the first one is done, the folder is free again.
    with pytest.raises(SystemExit) as info:
        main(["regress", "recipes", "--out", "out"])
    assert len(ran) == 1
