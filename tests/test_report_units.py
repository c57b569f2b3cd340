"""What the tables and summary files say: shared latency, speed-ups, units."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from kdrun.measure import accuracy, paired_correct
from kdrun.report.results import deltas, paired_gain
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


def test_no_iqr_header_without_an_iqr_and_no_ratio_rounded_to_zero():
    teacher, baseline, student = _row("cnn", 0.5, 0.97), _row("mlp", 0.03, 0.93), _row("mlp", 0.03, 0.95)
    teacher["flops"] = 20 / 0.000412  # a student about 2,400 times cheaper
    for row in (teacher, baseline, student):
        row["latency_iqr_ms"] = {"batch1": None}  # too few timed blocks for a spread (smoke runs)
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
    assert "ms @1" in text and "(IQR)" not in text.split("\n")[2]  # the header row
    assert "FLOPs x0.000412" in text and "x0.000 " not in text


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


def test_the_gain_comes_with_its_test_set_standard_error_and_mcnemar_p():
    # 1,000 test images; the student alone right on 30, the scratch student alone on 23.
    noise = paired_gain(1000, 30, 23)
    gain = (30 - 23) / 1000
    assert noise["kd_gain_top1_se"] == pytest.approx(math.sqrt((53 / 1000 - gain**2) / 1000))
    assert noise["kd_gain_top1_se"] == pytest.approx(0.0072767, abs=1e-6)
    tail = sum(math.comb(53, k) for k in range(30, 54)) / 2**53  # P(X >= 30), X ~ Bin(53, 1/2)
    assert noise["kd_gain_test"] == {
        "images": 1000,
        "student_only": 30,
        "baseline_only": 23,
        "p_value": pytest.approx(2 * tail),
    }
    assert paired_gain(1000, 40, 0)["kd_gain_test"]["p_value"] < 1e-11  # 40 of 40: not chance
    assert paired_gain(500, 0, 0) == {
        "kd_gain_top1_se": 0.0,
        "kd_gain_test": {"images": 500, "student_only": 0, "baseline_only": 0, "p_value": 1.0},
    }


class _Fixed(nn.Module):
    """Predicts ``answers[i]`` for the i-th image (its index is the input), without autograd."""

    def __init__(self, answers: list[int]) -> None:
        super().__init__()
        self.answers = torch.tensor(answers)
        self.weight = nn.Parameter(torch.ones(()))
        self.grad_modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_modes.append(torch.is_grad_enabled())
        return F.one_hot(self.answers[x.long()], 3).float() * self.weight


def test_paired_counts_and_accuracy_run_without_autograd():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    batches = [(torch.arange(0, 4), labels[:4]), (torch.arange(4, 6), labels[4:])]
    student = _Fixed([0, 1, 2, 1, 1, 0])  # right on 0, 1, 2, 4
    scratch = _Fixed([0, 2, 2, 0, 0, 0])  # right on 0, 2, 3
    assert paired_correct(student, scratch, batches) == (6, 2, 1)  # only the student: 1, 4; only scratch: 3
    assert accuracy(student, batches, 3)["top1"] == pytest.approx(4 / 6)
    assert student.grad_modes and not any(student.grad_modes + scratch.grad_modes)


def test_the_model_card_judges_the_gain_with_the_paired_se_of_the_table():
    from kdrun.export.card import _accuracy_lines

    teacher, baseline, student = _row("cnn", 0.5, 0.97), _row("mlp", 0.03, 0.93), _row("mlp", 0.03, 0.95)
    d = deltas(teacher, baseline, student) | paired_gain(1000, 40, 20)  # 20 more images right
    results = {
        "teacher": teacher,
        "baseline": baseline,
        "student": student,
        "deltas": d,
        "data": {"test": 1000},
    }
    text = "\n".join(_accuracy_lines(results, {}))
    assert f"paired standard error on the 1000 test images is ±{100 * d['kd_gain_top1_se']:.2f} pts" in text
    binomial = math.sqrt(0.95 * 0.05 / 1000)
    assert f"±{100 * binomial:.2f}" not in text


def test_curves_have_whole_epoch_ticks_and_one_legend(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from kdrun.report import curves

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    metrics = {"train/loss": [(0, 2.0), (10, 1.0)], "val/acc": [(0, 0.5), (1, 0.6), (2, 0.7)]}
    drawn = [(tmp_path / f"run{i}", {"config": {"seed": i}}, metrics) for i in range(3)]
    monkeypatch.setattr(curves, "label", lambda results, run_dir: run_dir.name)
    curves.plot(drawn, tmp_path / "curves.png")
    (fig,) = kept
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    assert [text.get_text() for text in fig.legends[0].get_texts()] == ["run0", "run1", "run2"]
    ticks = fig.axes[1].get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks)
    plt.close(fig)
