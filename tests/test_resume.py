"""Resume: a run killed by SIGKILL continues from its last epoch checkpoint to the same numbers."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import kdrun.training.checkpointing as checkpointing
from kdrun.errors import KdrunConfigError
from kdrun.strategies.scratch import Scratch
from kdrun.training.checkpointing import LAST, AtomicCheckpointIO, resume_point
from kdrun.training.fit import fit
from kdrun.training.resume import resume_args
from tests.conftest import KDRUN, make_cfg, run_kdrun

# 12 student epochs on the smoke slice: the kill, sent within 10 ms of the first checkpoint,
# lands mid-phase.
RUN = ["train", "debug=smoke", "epochs=12", "threads=1", "measure.batch_sizes=[1]"]
ROLES = ("teacher", "baseline", "student")


def _metrics(results_json: Path) -> dict[str, float]:
    results = json.loads(results_json.read_text())
    assert results["status"] == "ok"
    return {f"{role}.{key}": results[role][key] for role in ROLES for key in ("top1", "top5", "val_top1")}


def test_a_run_killed_mid_student_phase_resumes_to_the_uninterrupted_numbers(tmp_path, shared_cache, capsys):
    from kdrun import train

    cache = f"paths.cache_dir={shared_cache}"
    threads = torch.get_num_threads()
    try:  # the uninterrupted run, in this process
        train([*RUN[1:], f"paths.output_root={tmp_path / 'out'}", cache], run_dir=tmp_path / "whole")
    finally:
        torch.set_num_threads(threads)

    out = ["paths.output_root=out", cache]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = subprocess.Popen([*KDRUN, *RUN, *out], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out/runs").glob(f"*/checkpoints/{LAST}")) and killed.poll() is None:
        assert time.monotonic() < deadline, "no student checkpoint appeared"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL  # killed, not finished
    (run_dir,) = (tmp_path / "out/runs").iterdir()
    assert not (run_dir / "results.json").exists()

    resumed = run_kdrun([*RUN, *out, "resume=auto"], tmp_path)  # the same command, resume=auto
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resume: continuing {run_dir}" in resumed.stdout
    assert "resume: continuing from" in resumed.stdout  # from the checkpoint, not from epoch 1
    assert _metrics(run_dir / "results.json") == _metrics(tmp_path / "whole/results.json")
    assert not (run_dir / "checkpoints").exists()  # trainer.keep_checkpoint=false: removed once finished

    capsys.readouterr()
    assert resume_args([f"resume={run_dir}"]) is None  # `kdrun train resume=<it>` runs nothing
    assert "has finished" in capsys.readouterr().out


def _fit(cfg, data, folder: Path, resume: bool, epochs: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Dropout(0.3), nn.Linear(16, 4))
    fit(
        Scratch(model),
        data,
        cfg,
        epochs=epochs,
        seed=0,
        log_dir=folder,
        label="t",
        checkpoint_dir=folder / "ck",
        resume=resume,
    )
    return model.state_dict()


def test_a_resumed_fit_draws_the_same_dropout_masks_as_an_uninterrupted_one(tmp_path, tiny_data):
    """Stopped after 2 of 3 epochs and resumed: the same weights, bit for bit, with dropout on
    (the loaders never draw from torch's global generator, whose state the checkpoint holds)."""
    cfg = make_cfg("recalibrate_bn=false", "optim.schedule=constant")  # the same LR in both runs
    whole = _fit(cfg, tiny_data, tmp_path / "whole", resume=False, epochs=3)
    _fit(cfg, tiny_data, tmp_path / "parts", resume=False, epochs=2)
    resumed = _fit(cfg, tiny_data, tmp_path / "parts", resume=True, epochs=3)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_truncated_checkpoint_is_set_aside_and_the_phase_starts_over(tmp_path, tiny_data, capsys):
    cfg = make_cfg("recalibrate_bn=false")
    first = _fit(cfg, tiny_data, tmp_path, resume=False)
    ckpt = tmp_path / "ck" / LAST
    assert resume_point(ckpt.parent) == ckpt
    ckpt.write_bytes(ckpt.read_bytes()[:200])

    again = _fit(cfg, tiny_data, tmp_path, resume=True)
    assert "unusable" in capsys.readouterr().out
    assert (tmp_path / "ck" / f"{LAST}.unusable").exists()
    assert all(torch.equal(first[k], again[k]) for k in first)  # trained from the start, same weights
    assert resume_point(ckpt.parent) == ckpt  # and checkpointed anew


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / LAST
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, path)

    def dies_midway(obj, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpointing.torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == [LAST]


def test_resume_dir_reruns_the_runs_own_overrides_in_its_directory(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- T=2\n- resume=auto\n")
    assert resume_args([f"resume={run_dir}"]) == ["T=2", f"resume='{run_dir}'", f"hydra.run.dir='{run_dir}'"]
    assert resume_args(["T=2"]) == ["T=2"]


@pytest.mark.parametrize(
    "args, allowed",
    [
        (["resume=/no/such/run"], "null, auto, or the directory of a kdrun train run"),
        (["-m", "resume=auto", "seed=0,1"], "not with -m"),
    ],
)
def test_bad_resume_values_are_rejected(args, allowed):
    with pytest.raises(KdrunConfigError, match=rf"^resume=.*{allowed}"):
        resume_args(args)


def test_resume_dir_takes_no_other_task_overrides(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("[]\n")
    with pytest.raises(KdrunConfigError, match=r"^resume=.*takes no other overrides \(got T=2\)"):
        resume_args([f"resume={tmp_path}", "T=2"])


def test_resume_auto_alone_continues_the_unfinished_run_not_the_newer_finished_default(
    tmp_path, monkeypatch, capsys
):
    from omegaconf import OmegaConf

    from tests.conftest import make_cfg

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "outputs/runs"
    for name, overrides in (("2026-01-01_00-00-00", ["T=2"]), ("2026-01-02_00-00-00", [])):
        (runs / name / ".hydra").mkdir(parents=True)
        (runs / name / ".hydra/config.yaml").write_text(OmegaConf.to_yaml(make_cfg(*overrides)))
        (runs / name / ".hydra/overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
        time.sleep(0.01)  # the default run is the newer one
    (runs / "2026-01-02_00-00-00/results.json").write_text('{"status": "ok"}')
    args = resume_args(["resume=auto"])  # the killed T=2 run, with its own overrides
    assert args is not None and args[0] == "T=2"
    assert args[-1] == f"hydra.run.dir='{(runs / '2026-01-01_00-00-00').resolve()}'"
    assert resume_args(["resume=auto", "T=4.0"]) is None  # with overrides: that config's newest run
