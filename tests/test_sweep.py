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
        ["train", "-m", "debug=smoke", "T=2,4", "alpha=0.3,0.9,1.5", "hydra.sweep.dir=outputs/multirun/s"],
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
    assert all("kd.alpha=1.5" in r["error"] for r in failed)
    assert {(r["config"]["kd"]["T"], r["config"]["kd"]["alpha"]) for r in ok} == {
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
    assert run.stdout.count("teacher: training") == 1
    assert run.stdout.count("baseline: training") == 1
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


def test_report_on_a_folder_without_runs_is_a_clear_error(tmp_path):
    run = run_kdrun(["report", str(tmp_path)], tmp_path)
    assert run.returncode == 2 and "holds no results.json" in run.stderr
