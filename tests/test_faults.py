"""Results a user can trust under faults and shared files: signals, concurrent runs, cache
integrity, hostile configs, report grouping, export checks, full or read-only disks."""

import csv
import errno
import json
import os
import shlex
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import hydra.core.utils
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf, open_dict
from safetensors.torch import save_file
from torch import nn

import kdrun.training.checkpointing as checkpointing
import kdrun.training.fit as fit_module
from kdrun.cache import Cache
from kdrun.cache.logits import load_or_compute
from kdrun.cli import _check_overrides, main
from kdrun.data import build_datamodule
from kdrun.errors import KdrunConfigError
from kdrun.export.command import load_run
from kdrun.measure import accuracy
from kdrun.models import save_weights
from kdrun.models.build import build
from kdrun.regress.compose import recipe_configs
from kdrun.regress.recipe import RecipeError, load_recipe
from kdrun.report.command import report
from kdrun.runtime import preemption
from kdrun.runtime.preemption import RunInterrupted
from kdrun.strategies import STRATEGIES
from kdrun.strategies.scratch import Scratch
from kdrun.train.validate import validate
from kdrun.training.checkpointing import LAST, AtomicCheckpointIO
from kdrun.training.fit import fit
from tests.conftest import KDRUN, make_cfg, run_kdrun


def _run_dirs(*overrides: str) -> tuple[str, str]:
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    return str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)


def test_runs_started_in_the_same_second_get_their_own_directories(monkeypatch):
    # Freeze the clock Hydra's `now` reads: what two jobs started together see.
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 1)

    monkeypatch.setattr(hydra.core.utils, "datetime", Frozen)
    first, second = _run_dirs(), _run_dirs()
    assert first[0] != second[0] and first[1] != second[1]
    assert first[0].startswith("outputs/runs/2026-01-01_00-00-00.000000-")


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_cache_entry_whose_files_changed_is_moved_aside_and_rebuilt(tmp_path, capsys):
    """Replaced weights (another valid model), a truncated file: caught by the digest, rebuilt."""
    cache, builds = Cache(tmp_path), []

    def build(folder: Path) -> None:
        builds.append(folder)
        save_file(_weights(nn.Linear(4, 2)), str(folder / "model.safetensors"))

    entry, _ = cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)
    good = (entry / "model.safetensors").read_bytes()
    save_file(_weights(nn.Linear(4, 2)), str(entry / "model.safetensors"))  # another valid model
    again, hit = cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)
    assert (again, hit, len(builds)) == (entry, False, 2)
    assert "model.safetensors" in capsys.readouterr().out
    (aside,) = tmp_path.glob("teacher/*.corrupt-*")
    assert (aside / "model.safetensors").read_bytes() != good  # kept for inspection
    (entry / "model.safetensors").write_bytes(good[:100])  # truncated
    assert cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)[1] is False
    assert cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)[1] is True  # intact: reused
    assert len(builds) == 3


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))


def test_altered_logits_are_rebuilt_and_non_finite_logits_are_never_stored(tiny_data, tmp_path):
    cache = Cache(tmp_path)
    first = STRATEGIES["vanilla"](_model(1), _model().eval(), T=4.0, alpha=0.9)
    assert load_or_compute(first, tiny_data, cache) == "computed"
    (file,) = tmp_path.glob("logits/*/logits.safetensors")
    save_file({"logits": torch.zeros_like(first.teacher_logits)}, str(file))  # values altered
    second = STRATEGIES["vanilla"](_model(1), _model().eval(), T=4.0, alpha=0.9)
    assert load_or_compute(second, tiny_data, cache) == "computed"
    assert torch.equal(second.teacher_logits, first.teacher_logits)

    broken = _model(2).eval()
    with torch.no_grad():
        broken[1].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        load_or_compute(STRATEGIES["vanilla"](_model(1), broken, T=4.0, alpha=0.9), tiny_data, cache)
    stored = [p for p in tmp_path.glob("logits/*/logits.safetensors") if ".corrupt-" not in str(p)]
    assert len(stored) == 1  # the good teacher's entry only


# The student phase runs 6 epochs on the smoke slice: a signal sent after its first checkpoint
# lands mid-phase.
RUN = ["train", "debug=smoke", "epochs=6", "threads=1", "measure.batch_sizes=[1]", "paths.output_root=out"]


def _signal_after_first_checkpoint(
    args: list[str], cwd: Path, signum: int, where: str = "out/runs/*"
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*KDRUN, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(cwd.glob(f"{where}/checkpoints/{LAST}")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no student checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signum)
    return proc


def test_sigterm_mid_student_phase_records_the_interruption_and_resumes(tmp_path, shared_cache):
    proc = _signal_after_first_checkpoint([*RUN, f"paths.cache_dir={shared_cache}"], tmp_path, signal.SIGTERM)
    out, err = (s.decode() for s in proc.communicate(timeout=120))
    assert proc.returncode == 143, err[-3000:]
    (run_dir,) = (tmp_path / "out/runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["status"], results["signal"], results["phase"]) == ("interrupted", "SIGTERM", "student")
    assert (run_dir / "checkpoints" / LAST).is_file()  # kept for the resume
    assert f"continue with: kdrun train resume={run_dir.resolve()}" in " ".join(err.split())

    resumed = run_kdrun(["train", f"resume={run_dir}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume: continuing from" in resumed.stdout
    assert json.loads((run_dir / "results.json").read_text())["status"] == "ok"
    epochs = {row["epoch"] for row in csv.DictReader((run_dir / "metrics.csv").open()) if row.get("val/acc")}
    assert epochs == {str(e) for e in range(6)}  # the rows of the epochs before the signal are kept


@pytest.mark.slow
def test_sigint_stops_a_sweep_which_a_rerun_completes_skipping_finished_points(tmp_path):
    sweep = ["train", "-m", *RUN[1:], "T=2,4"]
    proc = _signal_after_first_checkpoint(sweep, tmp_path, signal.SIGINT, where="out/multirun/*/T=4,*")
    out, err = (s.decode() for s in proc.communicate(timeout=120))
    assert proc.returncode == 130, err[-3000:]
    (sweep_dir,) = (tmp_path / "out/multirun").iterdir()
    # Point folders are named after their overrides: T=2,debug=smoke,... and T=4,...
    first, second = (next(sweep_dir.glob(f"T={t},*")) for t in (2, 4))
    statuses = [json.loads((p / "results.json").read_text())["status"] for p in (first, second)]
    assert statuses == ["ok", "interrupted"]
    message = " ".join(err.split())
    assert f"sweep: 1 point(s) finished ({first.name})" in message
    again = shlex.split(message.split("continue with: ")[1].split(" (finished")[0])
    assert again[:2] == ["kdrun", "train"] and again[-1] == f"hydra.sweep.dir={sweep_dir}"

    rerun = run_kdrun(again[1:], tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"sweep point {first.name}: finished in an earlier run of this sweep; skipped" in rerun.stdout
    assert "resume: continuing from" in (second / "train.log").read_text()  # from its checkpoint
    assert [json.loads((p / "results.json").read_text())["status"] for p in (first, second)] == ["ok", "ok"]


def test_export_refuses_weights_that_do_not_reach_the_recorded_top1(tmp_path):
    cfg = make_cfg("debug=smoke", "dataset=digits")
    data = build_datamodule(cfg.dataset)
    torch.manual_seed(0)
    trained = build(cfg.student, data)
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-2)
    x, y = data.splits["train"][:2]
    for _ in range(60):  # a plain loop: a student well above chance in a second
        optimizer.zero_grad()
        nn.functional.cross_entropy(trained(x), y).backward()
        optimizer.step()
    save_weights(trained, tmp_path / "student.safetensors")
    top1 = accuracy(trained.eval(), data.loader("test", batch_size=512), data.num_classes)["top1"]
    results = {
        "status": "ok",
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data": {"fingerprint": data.fingerprint},
        "student": {"top1": top1},
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert top1 > 0.5
    load_run(tmp_path)  # the run's own weights pass

    save_weights(
        build(cfg.student, data), tmp_path / "student.safetensors"
    )  # same architecture, other weights
    with pytest.raises(KdrunConfigError, match="not the weights of this run"):
        load_run(tmp_path)


def test_a_recipe_cannot_make_kdrun_call_anything_outside_the_allowlist(tmp_path):
    """A recipe pulls a YAML in through `defaults` that puts builtins.open(mode=w) under optim."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "recipes"
    folder.mkdir()
    optim = f"optim:\n  optimizer:\n    _target_: builtins.open\n    file: {victim}\n    mode: w\n"
    (folder / "helper.yaml").write_text(f"# @package _global_\n{optim}")
    (folder / "evil.yaml").write_text(
        "# @package _global_\ndefaults:\n  - helper\n"
        "regress:\n  description: d\n  tier: fast\n  seeds: [0]\n  expect:\n    - student.top1 >= 0\n"
    )
    # Refused when the recipe is composed, before any config is handed out ...
    with pytest.raises(
        RecipeError, match=r"evil.yaml:1: optim.optimizer._target_='builtins.open': not allowed"
    ):
        recipe_configs(load_recipe(folder / "evil.yaml"), ["debug=smoke"], tmp_path)
    cfg = make_cfg(
        "optim.optimizer._target_=builtins.open"
    )  # ... and by validate, given Hydra's plain compose
    assert cfg.optim.optimizer._target_ == "builtins.open"  # what Hydra would call
    with pytest.raises(KdrunConfigError, match=r"optim.optimizer._target_='builtins.open': not allowed"):
        validate(cfg)
    for name in ("kdrun.cli.os.system", "torch.optim.Adam.zero_grad", "kdrun.cache.FileLock"):
        with pytest.raises(KdrunConfigError, match="not allowed"):  # a function, a method, a foreign class
            validate(make_cfg(f"optim.optimizer._target_={name}"))
    assert victim.read_text() == "precious"


def test_added_keys_and_foreign_targets_stop_the_command_before_hydra_runs(capsys):
    for args, message in [
        (["+alpah=0.5"], "alpah=0.5: not a config key"),
        (["+hydra.callbacks.x._target_=os.system"], "hydra.callbacks.x._target_='os.system': not allowed"),
        (["-m", "T=2,4", "optim.optimizer._target_=shutil.copy"], "optim.optimizer._target_='shutil.copy'"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            _check_overrides(args)
        assert exit_info.value.code == 2
        assert message in " ".join(capsys.readouterr().err.split())
    _check_overrides(["+optim.optimizer.betas=[0.8,0.9]", "+trainer.gradient_clip_val=1.0"])  # arguments


def test_report_groups_by_the_whole_config_and_names_what_differs(tmp_path, capsys):
    runs = [("0.001", 0, 0.90), ("0.001", 1, 0.92), ("0.01", 0, 0.50), ("0.01", 0, 0.52)]
    for i, (lr, seed, top1) in enumerate(runs):
        cfg = OmegaConf.to_container(
            make_cfg(f"optim.optimizer.lr={lr}", f"seed={seed}", f"paths.output_root=out{i}"), resolve=True
        )
        row = {"top1": top1, "params": 10, "latency_ms": {"batch1": 0.1}}
        results = {
            "status": "ok",
            "config": cfg,
            "student": row,
            "baseline": {"top1": 0.5},
            "teacher": {"top1": 0.95},
            "deltas": {"kd_gain_top1": top1 - 0.5},
        }
        (tmp_path / f"run{i}").mkdir()
        (tmp_path / f"run{i}" / "results.json").write_text(json.dumps(results))
    report(tmp_path)
    with (tmp_path / "summary.csv").open() as handle:
        table = {row["optim.optimizer.lr"]: row for row in csv.DictReader(handle)}
    assert set(table) == {"0.001", "0.01"}  # two points, not one averaged over both rates
    assert float(table["0.001"]["top1_pct_mean"]) == pytest.approx(91.0)  # percent, as the tables
    assert table["0.001"]["n"] == "2" and table["0.01"]["n"] == "2"
    captured = capsys.readouterr()
    assert "rows differ in: optim.optimizer.lr" in captured.out
    assert "seed 0 appears more than once" in " ".join(captured.err.split())
    assert "optim.optimizer.lr" in (tmp_path / "summary.md").read_text()


def test_a_full_disk_while_checkpointing_says_so(tmp_path, monkeypatch):
    def full_disk(obj, handle):  # what torch's zip writer raises when a write comes up short
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4352 vs 4248")

    monkeypatch.setattr(checkpointing.torch, "save", full_disk)
    with pytest.raises(OSError, match=f"no space left on the device of {tmp_path}") as info:
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / LAST)
    assert info.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())  # no temp file left behind


def test_an_output_folder_that_cannot_be_created_is_one_line_before_hydra(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        _check_overrides([f"paths.output_root={blocker}/out"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"paths.output_root='{blocker}/out': cannot create" in err


class _SignalAtBatch(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_stops_a_fit_between_batches_as_an_interruption(tmp_path, tiny_data, monkeypatch):
    cfg = make_cfg("recalibrate_bn=false")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    original = fit_module.L.Trainer

    def trainer_with_signal(*args, **kwargs):
        kwargs["callbacks"] = [*kwargs["callbacks"], _SignalAtBatch()]
        return original(*args, **kwargs)

    monkeypatch.setattr(fit_module.L, "Trainer", trainer_with_signal)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    with pytest.raises(RunInterrupted) as info, preemption.stop_on_signals():
        fit(
            Scratch(model),
            tiny_data,
            cfg,
            epochs=3,
            seed=0,
            log_dir=tmp_path,
            label="student",
            checkpoint_dir=tmp_path / "ck",
        )
    assert (info.value.signal, info.value.phase, info.value.exit_code) == ("SIGINT", "student", 130)
    assert (tmp_path / "ck" / LAST).is_file()  # the first epoch's checkpoint, written before the signal
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_names_that_are_looked_up_come_with_the_closest_ones(capsys):
    for args, expected in [
        (["alpah=0.5"], "error: alpah: not a config key; did you mean alpha?"),
        (
            ["student=mobilenetv3"],
            "student=mobilenetv3: no config model/mobilenetv3; did you mean mobilenet_v3",
        ),
        (["teacher.nmae=cnn"], "teacher.nmae: not a config key; did you mean teacher.name"),
        (  # a model's own argument: not the default model's keys, but how to add one
            ["student=mobilenet_v3", "student.args.width_mult=0.5"],
            "student.args.width_mult: not a config key; an argument not in the config is added with "
            "+student.args.width_mult=",
        ),
    ]:
        with pytest.raises(SystemExit) as info:
            _check_overrides(args)
        assert info.value.code == 2
        assert expected in " ".join(capsys.readouterr().err.split())
    with pytest.raises(SystemExit) as info:
        main(["trian"])
    assert info.value.code == 2 and "did you mean train?" in capsys.readouterr().err


def test_a_list_value_without_m_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        _check_overrides(["T=2,4"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert "add -m (kdrun train -m T=2,4)" in " ".join(err.split())
    _check_overrides(["-m", "T=2,4"])  # with -m it is a sweep


def test_non_finite_numbers_and_seeds_beyond_32_bits_are_refused_before_training():
    for override, key in [
        ("T=nan", "T"),
        ("T=inf", "T"),
        ("alpha=nan", "alpha"),
        ("optim.optimizer.lr=inf", "optim.optimizer.lr"),
        ("seed=4294967296", "seed"),
        ("teacher.seed=4294967296", "teacher.seed"),
    ]:
        with pytest.raises(KdrunConfigError) as info:
            validate(make_cfg(override))
        assert info.value.key == key, override
    assert "<= 4294967295" in str(info.value)
    validate(make_cfg("seed=4294967295"))


def test_a_failure_before_results_json_exists_does_not_point_at_it(tmp_path, monkeypatch, capsys):
    from hydra.core.hydra_config import HydraConfig

    from kdrun.train import pipeline, prepare

    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["debug=smoke"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.mode = "RUN"
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # unset again afterwards
    HydraConfig.instance().set_config(cfg)

    def broken(dataset_yaml, cache_dir):
        raise RuntimeError("image 7 cannot be decoded")

    monkeypatch.setattr(prepare, "_datamodule", broken)
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.raises(SystemExit) as info:
        pipeline.hydra_task(cfg)
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 1 and "image 7 cannot be decoded" in err
    assert (
        not (tmp_path / "results.json").exists()
        and "results.json" in err
        and "no results.json written" in err
    )
