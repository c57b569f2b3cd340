"""Experiment loggers by config: what each one writes, read back from its own store."""

import json

import pytest

from kdrun.config import validate
from kdrun.errors import KdrunConfigError
from tests.conftest import make_cfg, run_kdrun

tensorboard = pytest.importorskip("tensorboard", reason="the `tensorboard` extra is not installed")
mlflow = pytest.importorskip("mlflow", reason="the `mlflow` extra is not installed")


def test_logger_group_selects_one_or_several_each_under_its_own_key():
    assert set(make_cfg().logger) == {"csv"}
    both = make_cfg("logger=[csv,tensorboard]").logger
    assert set(both) == {"csv", "tensorboard"}
    assert both.tensorboard._target_.endswith("TensorBoardLogger")
    assert both.csv._target_.endswith("CSVLogger")
    assert not make_cfg("logger=none").logger
    assert make_cfg("~logger").get("logger") is None


def test_missing_logger_package_names_the_extra(monkeypatch):
    import kdrun.loggers

    monkeypatch.setattr(kdrun.loggers, "find_spec", lambda name: None if name == "mlflow" else object())
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
    """One smoke run with all three loggers, then a two-point sweep that reuses its cache."""
    cwd = tmp_path_factory.mktemp("loggers")
    run = run_kdrun(
        ["train", "debug=smoke", "logger=[csv,tensorboard,mlflow]", "hydra.run.dir=outputs/runs/a"], cwd
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "mlflow.store" not in run.stderr  # MLflow's table-creation chatter is silenced
    results = json.loads((cwd / "outputs/runs/a/results.json").read_text())
    return cwd, results


def test_csv_gets_losses_metrics_config_and_final_results(logged):
    cwd, results = logged
    run = cwd / "outputs/runs/a"
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"train/loss_soft", "train/loss_hard", "val/acc"} <= set(header)
    last = dict(zip(header, rows[-1].split(","), strict=True))
    assert float(last["results/deltas/kd_gain_top1"]) == pytest.approx(results["deltas"]["kd_gain_top1"])
    assert "alpha: 0.9" in (run / "hparams.yaml").read_text()


def test_tensorboard_event_file_holds_losses_final_results_and_hparams(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cwd, results = logged
    events = EventAccumulator(str(cwd / "outputs/runs/a/tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_soft", "train/loss_hard", "train/acc", "val/acc"} <= scalars
    (gain,) = events.Scalars("results/deltas/kd_gain_top1")
    assert gain.value == pytest.approx(results["deltas"]["kd_gain_top1"], abs=1e-6)
    assert events.Scalars("results/student/top1")[0].value == pytest.approx(results["student"]["top1"])
    # The HPARAMS tab: the resolved config next to the final results.
    assert "_hparams_/session_start_info" in events.summary_metadata
    # The teacher trained in this run logged to its own cache entry.
    teacher = cwd / "outputs/cache/teacher"
    assert list(teacher.glob("cnn-*/tensorboard/events.out.tfevents.*"))


def _runs(cwd, experiment):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return {r.info.run_name.split()[0]: r for r in client.search_runs([found.experiment_id])}, client


def test_mlflow_store_holds_a_run_per_phase_with_params_metrics_and_results(logged):
    cwd, results = logged
    runs, client = _runs(cwd, "kdrun")
    assert set(runs) == {"teacher", "baseline", "student"}
    student = runs["student"]
    assert student.info.status == "FINISHED"
    assert student.data.tags["kdrun.phase"] == "student"
    assert student.data.params["kd/T"] == "4.0" and student.data.params["student/name"] == "mlp"
    metrics = student.data.metrics
    assert metrics["results/deltas/kd_gain_top1"] == pytest.approx(results["deltas"]["kd_gain_top1"])
    assert {"train/loss_soft", "train/loss_hard", "val/acc"} <= set(metrics)
    history = client.get_metric_history(student.info.run_id, "train/loss")
    assert len(history) >= 8  # one per step: 512 images / 64 per batch
    assert "results/deltas/kd_gain_top1" not in runs["teacher"].data.metrics


def test_mlflow_runs_of_a_sweep_share_one_experiment(logged):
    cwd, _ = logged
    sweep = run_kdrun(
        ["train", "-m", "debug=smoke", "logger=mlflow", "T=2,8", "hydra.sweep.dir=outputs/multirun/s1"], cwd
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd}/outputs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sweep s1").experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert names == ["student T=2,debug=smoke,logger=mlflow", "student T=8,debug=smoke,logger=mlflow"]
    assert all("results/deltas/kd_gain_top1" in r.data.metrics for r in runs)
