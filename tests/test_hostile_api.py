"""Hostile input to kdrun's entry points: paths that are not files, and the Python API."""

import pytest
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.models import load_weights
from kdrun.train.validate import validate
from tests.conftest import make_cfg


@pytest.mark.parametrize(("path", "what"), [("/dev/zero", "a device, FIFO or socket"), ("DIR", "a folder")])
def test_a_checkpoint_that_is_a_device_or_a_folder_is_not_a_regular_file(tmp_path, path, what):
    path = str(tmp_path) if path == "DIR" else path
    with pytest.raises(KdrunConfigError, match=rf"teacher\.checkpoint=.*: not a regular file \({what}\)"):
        validate(make_cfg(f"teacher.checkpoint={path}"))
    with pytest.raises(KdrunConfigError, match=rf"not a regular file \({what}\)"):
        load_weights(nn.Linear(2, 2), path, "student.checkpoint")
    with pytest.raises(KdrunConfigError, match="file does not exist"):
        validate(make_cfg(f"teacher.checkpoint={tmp_path / 'absent.pt'}"))


@pytest.mark.parametrize(
    ("overrides", "run_dir", "match"),
    [
        ("T=4", None, r"^overrides='T=4': a list of strings"),
        ([4], None, r"^overrides=\[4\]: a list of strings"),
        (["debug=smoke"], 123, r"^run_dir=123: a path"),
        (["+alpah=0.5"], None, r"^alpah=.*not a config key.*did you mean alpha"),
        (["T=2,4"], None, r"^T=.*several values sweep"),
    ],
)
def test_python_api_refuses_bad_arguments_like_the_command_line(tmp_path, overrides, run_dir, match):
    from kdrun import train

    with pytest.raises(KdrunConfigError, match=match):
        train(overrides, run_dir=run_dir if run_dir is not None else tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_python_api_bad_input_found_at_validation_leaves_no_run_folder(tmp_path):
    from kdrun import train

    with pytest.raises(KdrunConfigError, match=r"^T=0"):
        train(["debug=smoke", "T=0"], run_dir=tmp_path / "runs" / "bad")
    assert list((tmp_path / "runs").iterdir()) == []
    kept = tmp_path / "mine"  # a folder the caller made and filled is left as it was
    kept.mkdir()
    (kept / "notes.txt").write_text("x")
    with pytest.raises(KdrunConfigError):
        train(["debug=smoke", "T=0"], run_dir=kept)
    assert sorted(p.name for p in kept.iterdir()) == [".hydra", "notes.txt"]


def test_python_api_run_restores_the_callers_torch_state_and_a_markup_folder_name_finishes(
    tmp_path, shared_cache, capsys, request
):
    import numpy as np
    import torch

    from kdrun import train

    torch.manual_seed(1234)
    np.random.seed(1234)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy())
    # The caller's setting, whatever an earlier test in this process left: the run turns it on.
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    request.addfinalizer(lambda: torch.use_deterministic_algorithms(was))
    run_dir = tmp_path / "[/x] run"
    results = train(
        ["debug=smoke", f"paths.output_root={tmp_path / 'out'}", f"paths.cache_dir={shared_cache}"], run_dir
    )
    assert results["status"] == "ok"
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])
    out = capsys.readouterr()
    assert "run failed" not in out.out + out.err and f"results: {run_dir / 'results.json'}" in out.out


def test_an_output_root_that_is_a_link_loop_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from kdrun.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").symlink_to("out")  # a file there was already refused this way
    with pytest.raises(SystemExit) as info:
        main(["train", "debug=smoke", "paths.output_root=out"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: paths.output_root='out': cannot create")
    assert "Too many levels of symbolic links" in err[0]
