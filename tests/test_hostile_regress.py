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


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (RECIPE.replace("epochs: 1\n", "epochs: 1\nT: 2\nT: 4\n"), 4, "'T'"),
        (RECIPE.replace("  tier: fast\n", "  tier: fast\n  tier: full\n"), 6, "'regress.tier'"),
    ],
)
def test_a_key_set_twice_in_a_recipe_is_one_line_with_file_and_line(
    tmp_path, monkeypatch, capsys, text, line, key
):
    from kdrun.cli import main

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "twice.yaml").write_text(text)
    failed = {"seed0": {"status": "failed", "error": "not run here"}}
    monkeypatch.setattr(command, "_run_recipe", lambda recipe, configs, out: failed)  # never trains
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["regress", "recipes", "--out", "out"])
    assert info.value.code == 2
    where = f"recipes/twice.yaml:{line}"
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {where}: duplicate key {key} (first set on line {line - 1}): set each key once"
    ]
