"""What the tables and summary files say: shared latency, speed-ups, units."""

import csv

from rich.console import Console

from kdrun.report.results import deltas
from kdrun.report.summary import write_csv, write_markdown
from kdrun.report.table import results_table


def _row(arch: str, ms: float, top1: float) -> dict:
    return {
        "name": arch,
        "source": "trained",
        "top1": top1,
        "params": 10,
        "flops": 20,
        "size_mb": 0.1,
        "arch_id": arch,
        "latency_ms": {"batch1": ms},
        "latency_iqr_ms": {"batch1": ms / 10},
    }


def test_speed_ups_only_between_different_architectures():
    student, baseline = _row("mlp", 0.03, 0.95), _row("mlp", 0.03, 0.93)
    assert deltas(_row("cnn", 0.6, 0.97), baseline, student)["latency_speedup"]["batch1"] == 20.0
    assert deltas(_row("mlp", 0.05, 0.97), baseline, student)["latency_speedup"]["batch1"] is None


def test_results_table_shows_the_iqr_and_no_speed_up_within_one_architecture():
    teacher, baseline, student = _row("mlp", 0.05, 0.97), _row("mlp", 0.03, 0.93), _row("mlp", 0.03, 0.95)
    results = {
        "teacher": teacher,
        "baseline": baseline,
        "student": student,
        "deltas": deltas(teacher, baseline, student),
        "strategy": {"name": "vanilla"},
        "data": {"name": "digits", "test": 100},
        "seed": 0,
    }
    console = Console(width=250, record=True)
    console.print(results_table(results))
    text = console.export_text()
    assert "ms @1 (IQR)" in text and "0.030 (0.003)" in text
    assert "faster" not in text and "one measurement per architecture" in text


def test_summary_files_speak_percent_points_and_seeds(tmp_path):
    row = {
        "strategy": "vanilla",
        "teacher": "cnn",
        "student": "mlp",
        "dataset": "d",
        "T": 4.0,
        "alpha": 0.9,
        "epochs": 1,
        "n": 2,
        "failed": 0,
        "seeds": "0 1",
        "top1_mean": 0.9443,
        "top1_std": 0.0055,
        "gain_mean": 0.012,
        "gain_std": 0.0075,
        "baseline_top1_mean": 0.9323,
        "teacher_top1_mean": 0.976,
        "params": 10,
        "latency_ms_batch1": 0.03,
    }
    write_csv([row], tmp_path / "summary.csv")
    (written,) = csv.DictReader((tmp_path / "summary.csv").open())
    assert float(written["top1_pct_mean"]) == 94.43 and float(written["gain_pts_mean"]) == 1.2
    assert float(written["teacher_top1_pct_mean"]) == 97.6 and "top1_mean" not in written
    write_markdown([row], tmp_path / "summary.md", "note")
    header, _, line = (tmp_path / "summary.md").read_text().splitlines()[:3]
    assert "| seeds |" in header and "| 0 1 |" in line and "94.43 ± 0.55" in line
