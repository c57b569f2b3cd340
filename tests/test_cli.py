"""The command line as a user meets it: help, composed config, shell completion, models, colour."""

import os
import pty
import subprocess

import pytest
import yaml

from kdrun.cli import COMMANDS, main
from tests.conftest import KDRUN, run_kdrun


def test_top_level_help_lists_each_command_on_one_line(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert list(lines) == list(COMMANDS)
    assert all(len(line.split()) > 3 for line in lines.values())  # a description on the same line


def test_an_unknown_command_names_the_allowed_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["distill"])
    assert exit_.value.code == 2 and "allowed: train" in capsys.readouterr().err


def test_train_help_lists_config_groups_with_their_choices(tmp_path):
    out = run_kdrun(["train", "--help"], tmp_path).stdout
    groups = dict(
        line.split(": ", 1) for line in out.split("Config groups")[1].split("\n\n")[0].splitlines()[1:]
    )
    assert groups["logger"] == "csv, mlflow, none, tensorboard"
    assert "imagefolder" in groups["dataset"].split(", ")
    assert "timm" in groups["model"].split(", ") and "cnn" in groups["model"].split(", ")
    assert "teacher=, student=: a model config" in out  # the model group, placed twice
    assert "logger=[csv,tensorboard]" in out and "docs/cli/train.md" in out
    assert "smoke" in groups["debug"].split(", ")


def test_cfg_job_prints_the_composed_config(tmp_path):
    run = run_kdrun(["train", "--cfg", "job", "logger=[csv,tensorboard]", "T=2"], tmp_path)
    cfg = yaml.safe_load(run.stdout)
    assert set(cfg["logger"]) == {"csv", "tensorboard"} and cfg["T"] == 2
    assert not (tmp_path / "outputs").exists()  # nothing ran
    no_logger = run_kdrun(["train", "--cfg", "job", "logger=null"], tmp_path)  # = logger=none, ~logger
    assert "logger" not in yaml.safe_load(no_logger.stdout)


def _complete(line: str, cwd) -> str:
    env = {**os.environ, "COMP_LINE": line}
    run = subprocess.run([*KDRUN, "-sc", "query=bash"], cwd=cwd, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_shell_completion_through_the_dispatcher(tmp_path):
    assert _complete("kdrun tr", tmp_path).split() == ["train"]
    assert _complete("kdrun train logger=", tmp_path).split() == [
        "logger=csv",
        "logger=mlflow",
        "logger=none",
        "logger=tensorboard",
    ]
    assert {"strategy=", "teacher=", "student="} <= set(_complete("kdrun train ", tmp_path).split())
    # teacher= and student= are the model group in two places: completed with its config names
    assert "teacher=resnet50" in _complete("kdrun train student=cnn teacher=res", tmp_path).split()
    script = run_kdrun(["train", "-sc", "install=bash"], tmp_path).stdout
    assert "complete -o nospace -o default -F hydra_bash_completion kdrun" in script


def test_models_lists_configs_and_filters_zoo_names(capsys):
    pytest.importorskip("timm", reason="timm is not installed (pip install 'kdrun[timm]')")
    main(["models", "*lite*"])
    out = capsys.readouterr().out
    lines = dict(line.split(":", 1) for line in out.splitlines() if ":" in line.split()[0])
    assert "timm" in lines["configs"] and "resnet50" in lines["configs"]
    assert "efficientnet_lite0" in lines["timm"].split(", ")
    assert "resnet50" not in lines["torchvision"]  # filtered by the pattern


def test_errors_are_coloured_on_a_terminal(tmp_path):
    # Piped, the same error is plain text: tests/test_e2e.py::test_bad_input_exits_2_with_one_line...
    output = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 1024)
        output.extend(data)
        return data

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        status = pty.spawn([*KDRUN, "train", "T=-1"], read)
    finally:
        os.chdir(cwd)
    assert os.waitstatus_to_exitcode(status) == 2
    assert b"\x1b[" in output and b"T=-1" in output


def test_version_and_a_closed_pipe(capsys):
    from kdrun import __version__

    main(["--version"])
    assert capsys.readouterr().out == f"kdrun {__version__}\n"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before kdrun writes: `kdrun -h | head -0`
    run = subprocess.run([*KDRUN, "--help"], stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert run.stderr == "" and run.returncode == 141


def test_command_help_texts(capsys):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        help_ = compose("export_soft_labels", return_hydra_config=True).hydra.help
    assert help_.app_name == "kdrun export-soft-labels"
    assert help_.header.startswith("kdrun export-soft-labels: write the teacher's logits")
    assert "docs/cli/export-soft-labels.md" in help_.footer
    with pytest.raises(SystemExit):
        main(["regress", "--help"])
    assert "(default: all)" in capsys.readouterr().out


def test_regress_finds_the_shipped_recipes_from_any_folder(tmp_path, monkeypatch):
    from kdrun.commands.regress import default_recipes

    monkeypatch.chdir(tmp_path)
    assert (default_recipes() / "mnist_hinton.yaml").is_file()
    (tmp_path / "recipes").mkdir()
    assert default_recipes() == tmp_path / "recipes" or default_recipes().resolve() == tmp_path / "recipes"
