"""The real `kdrun train` command on the embedded data with tiny budgets (debug=smoke)."""

import contextlib
import io
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import LOGGED, run_kdrun

ROW_KEYS = {
    "name",
    "source",
    "params",
    "flops",
    "size_mb",
    "top1",
    "top5",
    "latency_ms",
    "latency_iqr_ms",
}
DELTA_KEYS = {
    "kd_gain_top1",
    "gap_to_teacher_top1",
    "params_ratio",
    "flops_ratio",
    "latency_speedup",
}


def _results(cwd: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cwd / "outputs" / "runs").glob("*/results.json"))]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Two smoke runs in one folder: the first (the command, in its own process) trains teacher and
    baseline, the second (the same task through the Python API, in this process) reuses them."""
    from kdrun import train

    cwd = tmp_path_factory.mktemp("smoke")
    first = run_kdrun(["train", "debug=smoke", "hydra.run.dir=outputs/runs/first"], cwd)
    assert first.returncode == 0, first.stderr[-3000:]
    stdout, before = io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout):
            train(["debug=smoke", "T=2", "alpha=0.7"], run_dir="outputs/runs/second")
    finally:
        os.chdir(before)
    return cwd, first, SimpleNamespace(stdout=stdout.getvalue())


def test_results_json_holds_the_contract(smoke):
    cwd, _, _ = smoke
    results = json.loads((cwd / "outputs/runs/first/results.json").read_text())
    assert results["status"] == "ok"
    for role in ("teacher", "baseline", "student"):
        assert set(results[role]) >= ROW_KEYS, role
        assert set(results[role]["latency_ms"]) == {"batch1", "batch64"}
        assert results[role]["params"] > 0 and results[role]["flops"] > 0
    assert set(results["deltas"]) >= DELTA_KEYS
    gain = results["student"]["top1"] - results["baseline"]["top1"]
    assert results["deltas"]["kd_gain_top1"] == pytest.approx(gain, abs=1e-6)
    # The paired count over the test images gives the same gain, and its standard error.
    test = results["deltas"]["kd_gain_test"]
    assert test["images"] == results["data"]["test"]
    assert (test["student_only"] - test["baseline_only"]) / test["images"] == pytest.approx(gain, abs=1e-6)
    assert 0 < results["deltas"]["kd_gain_top1_se"] < 0.05 and 0 < test["p_value"] <= 1
    assert (results["config"]["T"], results["config"]["alpha"]) == (
        4.0,
        0.9,
    )  # resolved
    strategy = results["strategy"]
    assert (strategy["name"], strategy["T"], strategy["alpha"]) == ("vanilla", 4.0, 0.9)
    assert strategy["weights"] == pytest.approx({"soft": 0.9, "hard": 0.1})
    assert results["data"]["test"] == 1000 and results["data"]["train"] == 512


def test_smoke_run_learns(smoke):
    cwd, _, _ = smoke
    results = json.loads((cwd / "outputs/runs/first/results.json").read_text())
    for role in ("teacher", "baseline", "student"):
        assert results[role]["top1"] > 0.3, role  # chance is 0.10 on ten classes


def test_run_directory_has_metrics_weights_and_config(smoke):
    cwd, first, _ = smoke
    run = cwd / "outputs/runs/first"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set(header) >= LOGGED
    assert (run / "student.safetensors").is_file()
    assert (run / ".hydra" / "config.yaml").is_file()
    assert "distilled student" in first.stdout and "KD gain" in first.stdout
    assert re.search(r"KD gain [+-]\d+\.\d\d ± \d+\.\d\d\s+\(test-set\s+SE", first.stdout)


def test_run_says_and_records_its_device_precision_and_determinism(smoke):
    cwd, first, _ = smoke
    assert first.stdout.splitlines()[0].startswith("device: cpu (CPU, ")
    assert first.stdout.splitlines()[0].endswith(" · precision 32-true · deterministic true")
    device = json.loads((cwd / "outputs/runs/first/results.json").read_text())["device"]
    assert (device["accelerator"], device["precision"], device["deterministic"]) == ("cpu", "32-true", True)
    assert device["benchmark"] is False and device["cuda"] is None


def test_second_run_reuses_cached_teacher_and_baseline(smoke):
    cwd, first, second = smoke
    assert "teacher: training" in first.stdout and "baseline: training" in first.stdout
    assert "teacher: reusing cached" in second.stdout and "baseline: reusing cached" in second.stdout
    assert "training" not in second.stdout.split("student:")[0]
    assert len(list((cwd / "outputs/cache/teacher").glob("cnn-*/model.safetensors"))) == 1
    assert len(list((cwd / "outputs/cache/baseline").glob("mlp-*/model.safetensors"))) == 1
    a, b = (json.loads((cwd / f"outputs/runs/{n}/results.json").read_text()) for n in ("first", "second"))
    assert (a["teacher"]["top1"], a["baseline"]["top1"]) == (
        b["teacher"]["top1"],
        b["baseline"]["top1"],
    )
    assert (b["teacher"]["source"], b["baseline"]["source"]) == ("cache", "cache")
    assert (b["config"]["T"], b["config"]["alpha"]) == (2.0, 0.7)


def test_teacher_checkpoint_is_loaded_instead_of_trained_and_threads_are_restored(smoke):
    from kdrun import train

    cwd, _, _ = smoke
    weights = next((cwd / "outputs/cache/teacher").glob("cnn-*/model.safetensors"))
    overrides = ["debug=smoke", f"teacher.checkpoint={weights}", f"paths.output_root={cwd / 'outputs'}"]
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's count, which `threads=1` must leave as it was
    try:
        b = train([*overrides, "threads=1"], run_dir=cwd / "outputs/runs/ckpt")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    a = json.loads((cwd / "outputs/runs/first/results.json").read_text())
    assert b["teacher"]["source"] == "checkpoint"
    assert b["teacher"]["top1"] == a["teacher"]["top1"]


# One failure runs the whole command in the fast suite (a value refused inside the Hydra task);
# the others (each ~7 s of process start-up) run with `make test-slow`. Every rule is also checked
# in-process: values and files in tests/test_config.py, group options and unknown keys (refused
# before Hydra runs) in tests/test_faults.py (test_names_that_are_looked_up_come_with_the_closest_ones).
_SLOW = pytest.mark.slow
BAD_INPUT = [
    (["T=0"], "T"),
    pytest.param(["alpha=2"], "alpha", marks=_SLOW),
    pytest.param(["epochs=0"], "student.epochs", marks=_SLOW),
    pytest.param(["teacher=foo"], "teacher=foo: no config model/foo", marks=_SLOW),
    pytest.param(["student.name=bar"], "student.name", marks=_SLOW),
    pytest.param(["strategy.name=nope"], "strategy.name", marks=_SLOW),
    pytest.param(["teacher.checkpoint=/no/such/file.ckpt"], "teacher.checkpoint", marks=_SLOW),
    pytest.param(["dataset=cifar10"], "dataset.root", marks=_SLOW),
    pytest.param(["not_a_key=1"], "not_a_key", marks=_SLOW),
]


@pytest.mark.parametrize(("overrides", "key"), BAD_INPUT, ids=lambda v: v[0] if isinstance(v, list) else "")
def test_bad_input_exits_2_with_one_line_and_writes_no_results(tmp_path, overrides, key):
    run = run_kdrun(["train", "debug=smoke", *overrides], tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and key in lines[0], run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert "\x1b[" not in run.stderr  # no colour codes off a terminal
    assert not list(tmp_path.rglob("results.json"))
    assert not (tmp_path / "outputs" / "cache").exists()  # nothing was trained


def test_checkpoint_that_does_not_fit_the_model_is_refused_before_training(smoke, tmp_path):
    from kdrun import KdrunConfigError, train

    cwd, _, _ = smoke
    weights = next((cwd / "outputs/cache/teacher").glob("cnn-*/model.safetensors"))
    overrides = [
        "debug=smoke",
        "teacher=mlp",
        f"teacher.checkpoint={weights}",
        f"paths.output_root={tmp_path}",
    ]
    with pytest.raises(KdrunConfigError, match=r"^teacher\.checkpoint=.*does not fit"):
        train(overrides, run_dir=tmp_path / "run")
    assert not (tmp_path / "cache").exists()  # nothing was trained


def test_export_soft_labels_then_train_from_the_file(smoke, monkeypatch):
    from kdrun import KdrunConfigError, train

    cwd, _, _ = smoke
    weights = next((cwd / "outputs/cache/teacher").glob("cnn-*/model.safetensors"))
    export = run_kdrun(
        ["export-soft-labels", "debug=smoke", f"teacher.checkpoint={weights}", "out=labels.safetensors"], cwd
    )
    assert export.returncode == 0, export.stderr[-3000:]
    assert "wrote 512 x 10 teacher logits (cnn, checkpoint)" in export.stdout
    monkeypatch.chdir(cwd)  # strategy.path is relative, as typed on the command line
    soft = ["strategy=soft_labels", "strategy.path=labels.safetensors"]
    results = train(["debug=smoke", *soft], run_dir=cwd / "outputs/runs/soft")
    assert results["teacher"] is None and results["strategy"]["soft_labels"]["teacher"] == "cnn"
    with pytest.raises(KdrunConfigError) as info:
        train(["debug=smoke", "dataset.limit=256", *soft], run_dir=cwd / "other")
    assert str(info.value).startswith("strategy.path='labels.safetensors': sample ids must be")


def test_output_says_only_what_is_true(smoke):
    import stat

    from kdrun.files import file_mode

    cwd, first, second = smoke
    assert "phase 1/4: baseline (trained)" in first.stdout and "phase 4/4: evaluate" in first.stdout
    assert "phase 2/4: teacher (cached)" in second.stdout
    run = cwd / "outputs/runs/first"
    results = json.loads((run / "results.json").read_text())
    teacher, baseline, student = results["teacher"], results["baseline"], results["student"]
    # One latency measurement per architecture: the two mlp students share it, the cnn has its own.
    assert student["arch_id"] == baseline["arch_id"] != teacher["arch_id"]
    assert student["latency_ms"] == baseline["latency_ms"]
    assert student["latency_iqr_ms"] == baseline["latency_iqr_ms"]
    assert all(v is not None for v in results["deltas"]["latency_speedup"].values())
    # "(IQR)" in the header exactly when some row has one (a smoke run's short timings may have none).
    spread = any(row["latency_iqr_ms"]["batch1"] is not None for row in (teacher, baseline, student))
    assert "ms @1" in first.stdout and ("ms @1 (IQR)" in first.stdout) == spread
    assert "pipeline runs, they are not results" in first.stdout  # debug=smoke says so
    # The cnn teacher has BatchNorm: its re-estimated val accuracy is printed and logged, named apart.
    assert "[teacher] val/acc" in first.stdout and "after BatchNorm re-estimation" in first.stdout
    teacher_csv = next((cwd / "outputs/cache/teacher").glob("cnn-*/metrics.csv")).read_text()
    assert "val/acc_bn_recalibrated" in teacher_csv.splitlines()[0]
    log = (run / "train.log").read_text()
    assert "[student] epoch 1/1" in log and "distilled student" in log and "KD gain" in log
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["step", "epoch"] and not any(h.startswith("results/") for h in header)
    files = ("results.json", "student.safetensors", "metrics.csv")
    modes = {name: stat.S_IMODE((run / name).stat().st_mode) for name in files}
    assert set(modes.values()) == {file_mode()}, modes


def test_runs_lists_filters_and_compares_the_smoke_runs(smoke, capsys, monkeypatch):
    from kdrun.cli import main

    cwd, _, _ = smoke
    monkeypatch.chdir(cwd)
    main(["runs", "--filter", "T=2"])
    out = capsys.readouterr().out
    assert "outputs/runs/second" in out and "outputs/runs/first" not in out
    assert "T=2 alpha=0.7" in out and "cnn → mlp" in out and "1 of " in out
    main(["runs", "--compare", "outputs/runs/first", "outputs/runs/second"])
    out = capsys.readouterr().out
    assert re.search(r"│ T +│", out) and re.search(r"│ alpha +│", out) and "KD gain (pts)" in out
    assert "KD gain test-set SE (pts)" in out
    assert "dataset.name" not in out  # only the keys that differ


def test_cache_ls_shows_each_entry_and_the_total(smoke, capsys, monkeypatch):
    from kdrun.cli import main

    cwd, _, _ = smoke
    monkeypatch.chdir(cwd)
    main(["cache", "ls"])
    out = capsys.readouterr().out
    for kind in ("teacher", "baseline", "logits"):
        assert f"│ {kind}" in out, out
    assert "cnn, epochs 1, seed 0" in out and "in all" in out


def test_python_api_trains_and_raises_instead_of_exiting(smoke, tmp_path):
    import kdrun.report  # noqa: F401  (imported by the CLI anyway: the names stay callable)
    import kdrun.train  # noqa: F401
    from kdrun import KdrunConfigError, report, train

    cwd, _, _ = smoke
    with pytest.raises(KdrunConfigError, match=r"^T=0"):
        train(["debug=smoke", "T=0"], run_dir=tmp_path / "bad")
    with pytest.raises(KdrunConfigError, match="teacher"):
        train(["teacher=nope"])
    results = train(["debug=smoke", f"paths.output_root={cwd / 'outputs'}"], run_dir=tmp_path / "api")
    assert results == json.loads((tmp_path / "api" / "results.json").read_text())
    assert results["teacher"]["source"] == "cache"  # the smoke runs' teacher, reused
    (row,) = report(tmp_path / "api")
    assert row["n"] == 1 and row["top1_pct_mean"] == pytest.approx(100 * results["student"]["top1"])


def test_report_writes_curves_and_a_self_contained_html_page(smoke):
    from html.parser import HTMLParser

    from kdrun.report.command import report

    cwd, _, _ = smoke
    root = cwd / "outputs" / "runs"
    report(root, html=True)
    assert (root / "curves.png").read_bytes().startswith(b"\x89PNG")

    class Parts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[tuple[str, dict]] = []
            self.text: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

        def handle_data(self, data):
            self.text.append(data)

    page = (root / "report.html").read_text()
    parts = Parts()
    parts.feed(page)
    images = [a["src"] for t, a in parts.tags if t == "img"]
    # curves.png, and heatmap.png when the runs form a T x alpha grid: inline, nothing to fetch
    assert len(images) == 1 + (root / "heatmap.png").exists()
    assert all(src.startswith("data:image/png;base64,") for src in images)
    text = " ".join(parts.text)
    assert "top-1 %" in text and "gain (pts)" in text and "seeds" in text  # the summary table
    runs = [a for t, a in parts.tags if t == "details"]
    assert len(runs) == len(list(root.glob("*/results.json")))  # one section per run, its config
    assert "alpha: 0.7" in text and "kd:" in text
    assert re.search(r"KD gain [+-]\d+\.\d\d ± \d+\.\d\d pts", text)  # each run's gain with its SE
    # Self-contained: nothing to fetch, nothing to run.
    assert not any(t in ("script", "link", "iframe") for t, _ in parts.tags)
    assert "http://" not in page and "https://" not in page
