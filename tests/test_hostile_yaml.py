"""YAML from a user (recipes, a run folder's .hydra/*.yaml) is read within limits: a "billion
laughs" file is one line naming it, exit 2, at once."""

import re
import time
from pathlib import Path

import pytest

from kdrun.cli import main
from kdrun.errors import KdrunConfigError

LEVELS = 6  # 10**6 nodes once expanded: seconds and a gigabyte for OmegaConf, refused here at once


def _bomb(top: str) -> str:
    """Nested aliases under the key ``top``, ten of the level below at each level."""
    lines = ["  l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, LEVELS + 1):
        lines.append(f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    return f"{top}:\n" + "\n".join(lines) + "\n"


def _bomb_list() -> str:
    """The same as a YAML list (what .hydra/overrides.yaml holds)."""
    lines = ["- &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, LEVELS + 1):
        lines.append(f"- &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def _refused(args: list[str], capsys) -> str:
    """The command's one error line; it must take under 2 s of CPU (the machine may be shared)."""
    started = time.process_time()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    seconds = time.process_time() - started
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and seconds < 2, (exit_info.value.code, seconds, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return " ".join(err.split())


def test_resume_refuses_an_alias_bomb_in_overrides_yaml(tmp_path, capsys):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(_bomb_list())
    err = _refused(["train", f"resume={run}"], capsys)
    assert "overrides.yaml" in err and "nodes through its aliases" in err, err


def test_resume_auto_refuses_an_alias_bomb_in_a_runs_config_yaml(tmp_path, capsys):
    run = tmp_path / "out" / "runs" / "old"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(_bomb("T"))
    from conftest import make_cfg

    make_cfg("debug=smoke")  # Hydra imported and its config module read: the time below is the file's
    err = _refused(["train", "resume=auto", "debug=smoke", f"paths.output_root={tmp_path / 'out'}"], capsys)
    assert "config.yaml" in err and "nodes through its aliases" in err, err


def test_runs_listing_refuses_an_alias_bomb(tmp_path, capsys):
    run = tmp_path / "runs" / "r1"
    (run / ".hydra").mkdir(parents=True)
    (run / "results.json").write_text('{"status": "ok", "config": {}}')
    (run / ".hydra" / "overrides.yaml").write_text(_bomb_list())
    err = _refused(["runs", str(tmp_path / "runs")], capsys)
    assert "overrides.yaml" in err and "nodes through its aliases" in err, err


def test_regress_refuses_an_alias_bomb_in_a_recipe_or_a_file_it_pulls_in(tmp_path, capsys):
    folder = tmp_path / "recipes"
    folder.mkdir()
    block = "regress:\n  description: d\n  tier: fast\n  seeds: [0]\n  expect:\n    - student.top1 >= 0\n"
    recipe = folder / "bomb.yaml"
    recipe.write_text("# @package _global_\n" + _bomb("extra") + block)
    err = _refused(["regress", str(recipe), "--out", str(tmp_path / "out")], capsys)
    assert "bomb.yaml:1:" in err and "nodes through its aliases" in err, err
    recipe.write_text("# @package _global_\ndefaults:\n  - helper\n" + block)
    (folder / "helper.yaml").write_text("# @package _global_\n" + _bomb("extra"))
    err = _refused(["regress", str(recipe), "--out", str(tmp_path / "out"), "--", "debug=smoke"], capsys)
    assert "helper.yaml:1:" in err and "nodes through its aliases" in err, err


def test_the_loader_refuses_size_nesting_and_self_reference_and_reads_the_rest(tmp_path):
    from kdrun.config.user_yaml import MAX_BYTES, load_config, load_yaml

    cases = {
        "big.yaml": "a: " + "x" * MAX_BYTES + "\n",
        "deep.yaml": "[" * 5000 + "]" * 5000 + "\n",  # libyaml's own depth limit
        "deeper.yaml": "[" * 900 + "]" * 900 + "\n",  # under it: Python's recursion limit
        "self.yaml": "a: &a [1, *a]\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(KdrunConfigError, match=re.escape(f"key='{tmp_path / name}'")):
            load_config(tmp_path / name, "key")
    (tmp_path / "ok.yaml").write_text("a: &a {lr: 1e-3}\nb: *a\nc: [1, 2]\n")
    cfg = load_config(tmp_path / "ok.yaml", "key")
    assert cfg.b.lr == 0.001 and list(cfg.c) == [1, 2]  # OmegaConf's reading: 1e-3 is a float
    assert load_yaml(tmp_path / "ok.yaml", "key")["b"] == {"lr": "1e-3"}  # yaml.safe_load's: a string


def test_a_real_run_config_is_far_below_the_limits():
    from conftest import make_cfg
    from omegaconf import OmegaConf

    from kdrun.config.user_yaml import MAX_BYTES, MAX_NODES, check_text

    text = OmegaConf.to_yaml(make_cfg("teacher=resnet50", "student=mobilenet_v3"))
    assert len(text) < MAX_BYTES // 20
    check_text(text, Path("config.yaml"), "key")  # no error
    assert text.count("\n") < MAX_NODES // 20
