"""Experiment loggers by config: what each one writes, read back from its own store."""

import json

import pytest

from kdrun.errors import KdrunConfigError
from kdrun.train.validate import validate
from tests.conftest import make_cfg, run_kdrun

tensorboard = pytest.importorskip("tensorboard", reason="the `tensorboard` extra is not installed")
mlflow = pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")


def test_logger_group_selects_one_or_several_each_under_its_own_key():
    assert set(make_cfg().logger) == {"csv"}
    both = make_cfg("logger=[csv,tensorboard]").logger
    assert set(both) == {"csv", "tensorboard"}
    assert both.tensorboard._target_.endswith("TensorBoardLogger")
    assert both.csv._target_ == "kdrun.training.loggers.CsvLogger"
    assert not make_cfg("logger=none").logger
    assert make_cfg("~logger").get("logger") is None


def test_missing_logger_package_names_the_extra(monkeypatch):
    import kdrun.training.loggers

    monkeypatch.setattr(
        kdrun.training.loggers, "find_spec", lambda name: None if name == "mlflow" else object()
    )
    validate(make_cfg("logger=tensorboard"))  # its package counts as present here
    with pytest.raises(
        KdrunConfigError, match=r"logger='mlflow': needs mlflow: pip install 'kdrun\[mlflow\]'"
    ):
        validate(make_cfg("logger=[csv,mlflow]"))


def test_unknown_logger_class_is_rejected():
    with pytest.raises(KdrunConfigError, match=r"logger.csv._target_='nowhere.Logger'"):
        validate(make_cfg("logger.csv._target_=nowhere.Logger"))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A two-point smoke sweep with all three loggers (point 0 also trains teacher and baseline)."""
    cwd = tmp_path_factory.mktemp("loggers")
    sweep = "outputs/multirun/s1"
    run = run_kdrun(
        [
            "train",
            "-m",
            "debug=smoke",
            "dataset.limit=128",  # two steps an epoch: what each logger receives, not the accuracy
            "logger=[csv,tensorboard,mlflow]",
            "T=2,8",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "mlflow.store" not in run.stderr  # MLflow's table-creation chatter is silenced
    # Point folders are named after their overrides (Hydra's override_dirname), T=2 first.
    folders = sorted(p.parent for p in (cwd / sweep).glob("*/results.json"))
    assert [f.name.split(",")[0] for f in folders] == ["T=2", "T=8"]
    points = [json.loads((folder / "results.json").read_text()) for folder in folders]
    return cwd, points


def test_csv_gets_losses_metrics_and_config_step_and_epoch_first(logged):
    cwd, (results, _) = logged
    run = next((cwd / "outputs/multirun/s1").glob("T=2,*"))
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:2] == ["step", "epoch"]
    assert {"train/loss_soft", "train/loss_hard", "val/acc"} <= set(header)
    # The final results live in results.json, not as a last data row of the training curves.
    assert not any(name.startswith("results/") for name in header)
    assert any(dict(zip(header, row.split(","), strict=True))["val/acc"] for row in rows[1:])
    assert "alpha: 0.9" in (run / "hparams.yaml").read_text()


def test_tensorboard_event_file_holds_losses_final_results_and_hparams(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cwd, (_, results) = logged
    events = EventAccumulator(str(next((cwd / "outputs/multirun/s1").glob("T=8,*")) / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_soft", "train/loss_hard", "train/acc", "val/acc"} <= scalars
    (gain,) = events.Scalars("results/deltas/kd_gain_top1")
    assert gain.value == pytest.approx(results["deltas"]["kd_gain_top1"], abs=1e-6)
    assert events.Scalars("results/student/top1")[0].value == pytest.approx(results["student"]["top1"])
    # The HPARAMS tab: the resolved config next to the final results.
    assert "_hparams_/session_start_info" in events.summary_metadata
    # The teacher trained in this sweep logged to its own cache entry.
    assert list((cwd / "outputs/cache/teacher").glob("cnn-*/tensorboard/events.out.tfevents.*"))


def test_mlflow_sweep_is_one_experiment_with_a_run_per_phase_and_point(logged):
    from mlflow import MlflowClient

    cwd, points = logged
    client = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
    experiment = client.get_experiment_by_name("sweep s1")
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    students = [
        "student T=2,dataset.limit=128,debug=smoke,logger=[csv,tensorboard,mlflow]",
        "student T=8,dataset.limit=128,debug=smoke,logger=[csv,tensorboard,mlflow]",
    ]
    assert sorted(runs) == sorted(
        [
            "teacher T=2,dataset.limit=128,debug=smoke,logger=[csv,tensorboard,mlflow]",
            "baseline T=2,dataset.limit=128,debug=smoke,logger=[csv,tensorboard,mlflow]",
            *students,
        ]
    )
    for name, results in zip(students, points, strict=True):
        student = runs[name]
        assert student.info.status == "FINISHED" and student.data.tags["kdrun.phase"] == "student"
        assert student.data.params["T"] == str(results["config"]["T"])
        assert student.data.params["student/name"] == "mlp"
        metrics = student.data.metrics
        assert metrics["results/deltas/kd_gain_top1"] == pytest.approx(results["deltas"]["kd_gain_top1"])
        assert {"train/loss_soft", "train/loss_hard", "val/acc"} <= set(metrics)
    history = client.get_metric_history(runs[students[0]].info.run_id, "train/loss")
    assert len(history) >= 2  # one per step: 128 images / 64 per batch
    teacher = next(r for n, r in runs.items() if n.startswith("teacher"))
    assert "results/deltas/kd_gain_top1" not in teacher.data.metrics


def test_single_runs_go_to_the_kdrun_experiment_named_by_phase(tmp_path):
    from kdrun.training.loggers import _mlflow_args

    args = _mlflow_args(make_cfg("logger=mlflow").logger.mlflow, tmp_path, "baseline")
    assert (args["experiment_name"], args["run_name"]) == ("kdrun", "baseline")
    assert args["tags"] == {"kdrun.phase": "baseline", "kdrun.log_dir": str(tmp_path)}
    named = make_cfg("logger=mlflow", "logger.mlflow.experiment_name=mine", "logger.mlflow.run_name=x")
    assert "experiment_name" not in _mlflow_args(named.logger.mlflow, tmp_path, "student")
