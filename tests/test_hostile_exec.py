"""No code runs from a run folder, a recipe or the command line: every ``_target_`` (the ``hydra``
node's callbacks, launcher and sweeper included) goes through the allowlist from every entry point,
whatever the other arguments look like."""

from pathlib import Path

import pytest

from kdrun.cli import main
from kdrun.errors import KdrunConfigError

# T=-1 is refused by the task's own validation: the code that ran the callback stops right after.
BAD_VALUE = "T=-1"


def _copy(tmp_path: Path, key: str = "hydra.callbacks.x") -> tuple[list[str], Path]:
    """Overrides that make Hydra call ``shutil.copyfile(src, dst)``, and ``dst``."""
    src, dst = tmp_path / "src.pth", tmp_path / "site-packages" / "evil.pth"
    tmp_path.mkdir(parents=True, exist_ok=True)
    src.write_text("import os\n")
    dst.parent.mkdir()
    return [f"++{key}._target_=shutil.copyfile", f"++{key}._args_=[{src},{dst}]"], dst


def _exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def test_a_flag_no_longer_skips_the_target_check_on_the_command_line(tmp_path, capsys):
    copy, dst = _copy(tmp_path)
    out = f"paths.output_root={tmp_path / 'out'}"
    assert _exit_code(["train", "--config-name=train", *copy, BAD_VALUE, out]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "hydra.callbacks.x._target_='shutil.copyfile': not allowed" in err, err
    assert not dst.exists()
    for flags in (["--cfg", "job"], ["--resolve", "--cfg", "all"], ["--info", "config"]):
        assert _exit_code(["train", *flags, *copy, out]) == 2
    assert not dst.exists()


def test_sweep_with_a_flag_checks_the_launcher_and_the_callbacks(tmp_path, capsys):
    out = f"paths.output_root={tmp_path / 'out'}"
    for key in ("hydra.callbacks.x", "hydra.launcher"):
        copy, dst = _copy(tmp_path / key, key)
        code = _exit_code(["train", "-m", "--config-name=train", "T=2,4", *copy, "alpha=5", out])
        assert code == 2 and not dst.exists()
        assert f"{key}._target_='shutil.copyfile': not allowed" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(
    "flag",
    ["--config-dir=/tmp", "--config-path=/tmp", "--experimental-rerun=config.pickle", "--config-name=evil"],
)
def test_flags_that_load_configs_or_pickles_from_elsewhere_are_refused(flag, capsys):
    assert _exit_code(["train", flag]) == 2
    err = capsys.readouterr().err
    assert flag.split("=")[0] in err and "Traceback" not in err, err


def test_resume_of_a_run_folder_whose_overrides_call_code_is_refused(tmp_path, capsys):
    """The repro: overrides.yaml holds --config-name=train and a hydra callback with _args_."""
    copy, dst = _copy(tmp_path)
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    lines = ["--config-name=train", *copy, BAD_VALUE, f"paths.output_root={tmp_path / 'out'}"]
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- '{line}'\n" for line in lines))
    assert _exit_code(["train", f"resume={run}"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "overrides.yaml holds '--config-name=train'" in err, err
    assert not dst.exists()
    # Without the flag, the callback itself is refused; so is a task-level target.
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- '{line}'\n" for line in lines[1:]))
    assert _exit_code(["train", f"resume={run}"]) == 2
    assert "holds '++hydra.callbacks.x._target_=shutil.copyfile'" in capsys.readouterr().err
    task, _ = _copy(tmp_path / "task", "optim.optimizer")
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- '{line}'\n" for line in [*task, *lines[3:]]))
    assert _exit_code(["train", f"resume={run}"]) == 2
    assert "optim.optimizer._target_='shutil.copyfile': not allowed" in capsys.readouterr().err
    assert not dst.exists()
    # Hydra never stores its own keys there: hydra.job.env_set would reach the processes a run starts.
    for line in (
        "hydra.job.env_set.LD_PRELOAD=/x.so",
        "+hydra.job.env_set.PYTHONPATH=/x",
        "hydra/launcher=basic",
    ):
        (run / ".hydra" / "overrides.yaml").write_text(f"- '{line}'\n- {BAD_VALUE}\n")
        assert _exit_code(["train", f"resume={run}"]) == 2
        assert f"holds '{line}'" in capsys.readouterr().err


def test_python_api_checks_the_hydra_node(tmp_path):
    import kdrun
    from kdrun.api import compose

    copy, dst = _copy(tmp_path)
    with pytest.raises(KdrunConfigError, match=r"hydra.callbacks.x._target_='shutil.copyfile': not allowed"):
        compose([*copy, "debug=smoke"])
    with pytest.raises(KdrunConfigError, match="not allowed"):
        kdrun.train([*copy, "debug=smoke", f"paths.output_root={tmp_path / 'out'}"], run_dir=tmp_path / "run")
    assert not dst.exists() and not (tmp_path / "run").exists()
    assert "hydra" not in compose(["debug=smoke"])  # the plain config, as before


def test_regress_checks_the_hydra_node_of_recipes_and_of_its_overrides(tmp_path, capsys):
    copy, dst = _copy(tmp_path)
    src, target = copy[1].split("=[", 1)[1].rstrip("]").split(",")
    recipe = tmp_path / "recipes" / "evil.yaml"
    recipe.parent.mkdir()
    block = "regress:\n  description: d\n  tier: fast\n  seeds: [0]\n  expect:\n    - student.top1 >= 0\n"
    recipe.write_text("# @package _global_\n" + block)
    out = ["--out", str(tmp_path / "out")]
    assert _exit_code(["regress", str(recipe), *out, "--", *copy, "debug=smoke", BAD_VALUE]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "evil.yaml:1:" in err and "hydra.callbacks.x._target_='shutil.copyfile': not allowed" in err, err
    callback = (
        f"hydra:\n  callbacks:\n    x:\n      _target_: shutil.copyfile\n      _args_: [{src}, {target}]\n"
    )
    recipe.write_text("# @package _global_\n" + callback + block)
    assert _exit_code(["regress", str(recipe), *out, "--", "debug=smoke", BAD_VALUE]) == 2
    assert "evil.yaml:" in capsys.readouterr().err and not dst.exists()
