"""A real 2x2 multirun on the smoke settings, and `kdrun report` on what it leaves."""

import csv
import json

import pytest

from tests.conftest import run_kdrun


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """T x alpha = 2 x 2 points plus one invalid alpha: 5 jobs, one teacher, one baseline."""
    cwd = tmp_path_factory.mktemp("sweep")
    run = run_kdrun(
        [
            "train",
            "-m",
            "debug=smoke",
            "dataset.limit=128",  # the sweep's mechanics, not its accuracies: 2 steps an epoch
            "T=2,4",
            "alpha=0.3,0.9,1.5",
            "hydra.sweep.dir=outputs/multirun/s",
        ],
        cwd,
        timeout=600,
    )
    return cwd, run, cwd / "outputs/multirun/s"


def test_every_valid_point_runs_and_the_invalid_one_is_recorded_as_failed(sweep):
    _, run, root = sweep
    results = [json.loads(p.read_text()) for p in sorted(root.glob("*/results.json"))]
    assert len(results) == 6
    ok = [r for r in results if r["status"] == "ok"]
    failed = [r for r in results if r["status"] == "failed"]
    assert len(ok) == 4 and len(failed) == 2
    assert all("alpha=1.5" in r["error"] for r in failed)
    assert {(r["config"]["T"], r["config"]["alpha"]) for r in ok} == {
        (2.0, 0.3),
        (2.0, 0.9),
        (4.0, 0.3),
        (4.0, 0.9),
    }
    assert run.returncode == 1  # the sweep says that points failed
    assert "sweep: 6 points, 2 failed" in run.stdout
    assert "[point 1/6]" in run.stdout and "FAILED" in run.stdout


def test_the_teacher_and_baseline_are_trained_exactly_once(sweep):
    cwd, run, _ = sweep
    logs = "".join(p.read_text() for p in (cwd / "outputs/multirun/s").glob("*/train.log"))
    assert logs.count("teacher: training") == 1 and logs.count("baseline: training") == 1
    # Compact: a line per point and the summary table at the end, no per-point results table.
    assert "distilled student" not in run.stdout and "[student] epoch" not in run.stdout
    assert "kdrun report: " in run.stdout and "wrote " in run.stdout
    assert len(list((cwd / "outputs/cache/teacher").glob("cnn-*/model.safetensors"))) == 1


def test_report_writes_csv_markdown_and_heatmap(sweep):
    cwd, _, root = sweep
    (root / "corrupt").mkdir(exist_ok=True)
    (root / "corrupt" / "results.json").write_text("{not json")
    run = run_kdrun(["report", str(root)], cwd)
    assert run.returncode == 0, run.stderr
    assert "skipped" in run.stderr and "corrupt/results.json" in run.stderr
    with (root / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    valid = [r for r in rows if r["n"] == "1"]
    assert {(float(r["T"]), float(r["alpha"])) for r in valid} == {(2, 0.3), (2, 0.9), (4, 0.3), (4, 0.9)}
    assert sum(int(r["failed"]) for r in rows) == 2
    png = (root / "heatmap.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert "| vanilla | cnn | mlp |" in (root / "summary.md").read_text()


def test_report_on_a_folder_without_runs_is_a_clear_error(tmp_path, capsys):
    from kdrun.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path)])
    assert exit_.value.code == 2 and "holds no results.json" in capsys.readouterr().err


@pytest.mark.slow  # two parallel kdrun processes on 2 cores: ~20 s
def test_joblib_launcher_runs_points_in_parallel_processes(tmp_path):
    run = run_kdrun(
        [
            "train",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "debug=smoke",
            "threads=1",
            "T=2,4",
            "hydra.sweep.dir=outputs/multirun/j",
        ],
        tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "outputs/multirun/j").glob("*/results.json")]
    assert sorted(r["config"]["T"] for r in results) == [2.0, 4.0]
    assert all(r["status"] == "ok" for r in results)
    # Both jobs wanted the same teacher; the cache lock let exactly one of them train it.
    assert len(list((tmp_path / "outputs/cache/teacher").glob("cnn-*/model.safetensors"))) == 1
    assert "sweep: 2 points, 0 failed" in run.stdout


def test_optuna_search_maximises_validation_accuracy(tmp_path, shared_cache):
    run = run_kdrun(
        [
            "train",
            "-m",
            "hparams_search=kd_optuna",
            "hydra.sweeper.n_trials=2",
            "debug=smoke",
            f"paths.cache_dir={shared_cache}",  # the smoke teacher and baseline, not part of a point's name
            "hydra.job.config.override_dirname.exclude_keys=[paths.cache_dir]",
            "hydra.sweep.dir=outputs/multirun/o",
        ],
        tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    best = (tmp_path / "outputs/multirun/o/optimization_results.yaml").read_text()
    assert "best_params" in best and "T:" in best and "alpha:" in best
    results = [json.loads(p.read_text()) for p in (tmp_path / "outputs/multirun/o").glob("*/results.json")]
    assert len(results) == 2
    assert all(1.0 <= r["config"]["T"] <= 16.0 and 0.1 <= r["config"]["alpha"] <= 0.95 for r in results)
    best_value = float(best.split("best_value:")[1].split()[0])
    assert best_value == max(r["student"]["val_top1"] for r in results)  # val, not test


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.timeout_min == 240 and "partition" in cfg.hydra.launcher


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["foo=1,2"], "foo: not a config key"), (["teacher=cnn,bogus"], "teacher=bogus: no config model/bogus")],
    ids=["unknown-key", "unknown-group-option"],
)
def test_sweep_over_an_unknown_key_or_option_fails_before_any_point(tmp_path, args, needle):
    run = run_kdrun(["train", "-m", "debug=smoke", *args], tmp_path)
    assert run.returncode == 2
    assert needle in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists()


def test_report_works_on_a_single_run_directory(sweep):
    cwd, _, root = sweep
    point = next(p.parent for p in sorted(root.glob("*/results.json")) if '"ok"' in p.read_text())
    run = run_kdrun(["report", str(point)], cwd)
    assert run.returncode == 0, run.stderr
    with (point / "summary.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 1
    assert not (point / "heatmap.png").exists()  # one point is not a T x alpha grid
