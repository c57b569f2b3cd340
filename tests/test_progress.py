"""Progress of long phases: a live bar on a terminal, one line per phase and epoch in a log."""

import io
import time

import pytest
from torch import nn

from kdrun import progress
from kdrun.console import console, console_log
from kdrun.strategies.scratch import Scratch
from kdrun.training.fit import fit
from tests.conftest import make_cfg

BAR = "━"


@pytest.fixture
def captured(monkeypatch):
    """kdrun's console written to a buffer; ``captured(terminal)`` says whether it is a terminal."""
    out = io.StringIO()

    def as_terminal(terminal: bool) -> io.StringIO:
        monkeypatch.setattr(console, "_file", out)  # undone to None: follow sys.stdout again
        monkeypatch.setattr(console, "_force_terminal", terminal)
        monkeypatch.setattr(console, "is_interactive", terminal)
        return out

    monkeypatch.setattr(progress, "LINE_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "REFRESH_S", 0.0)
    return as_terminal


def _two_nested_phases() -> None:
    with progress.phase("regress", 2, unit="recipes") as outer:
        for number in range(2):
            outer.describe(f"regress: recipe {number + 1}/2")
            for _ in progress.track(range(3), f"recipe {number + 1} epoch"):
                time.sleep(0.3)  # the display refreshes 4 times a second
                console.print("a printed line")
            outer.advance()


def test_on_a_terminal_a_phase_draws_a_live_bar_with_count_and_elapsed(captured):
    out = captured(True)
    _two_nested_phases()
    text = out.getvalue()
    assert BAR in text and "\r" in text  # the live display, redrawn in place
    assert "2/3 batches" in text and "0:00:0" in text  # the count and the elapsed time
    assert "regress: recipe 2/2" in text  # the outer phase's row while the inner one runs
    assert "regress: 2/2 recipes in " in text  # the line the phase leaves


def test_off_a_terminal_one_line_per_phase_and_no_carriage_returns(captured):
    out = captured(False)
    _two_nested_phases()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and BAR not in out.getvalue()
    phase_lines = [line for line in lines if line != "a printed line"]
    assert [line.split(" in ")[0] for line in phase_lines] == [
        "recipe 1 epoch: 3/3 batches",
        "recipe 2 epoch: 3/3 batches",
        "regress: 2/2 recipes",
    ]


def test_a_short_phase_leaves_no_line(captured, monkeypatch):
    out = captured(False)
    monkeypatch.setattr(progress, "LINE_AFTER_S", 60.0)
    list(progress.track(range(3), "quick"))
    assert out.getvalue() == ""


def test_the_run_log_of_a_terminal_run_keeps_the_lines_not_the_bar_frames(captured, tmp_path):
    out = captured(True)
    with console_log(tmp_path / "train.log"):
        _two_nested_phases()
    log = (tmp_path / "train.log").read_text()
    assert BAR in out.getvalue()  # the terminal had the bar
    assert BAR not in log and "\r" not in log and "\x1b" not in log
    assert log.count("a printed line") == 6 and "regress: 2/2 recipes in " in log


def test_a_step_reaches_rich_only_every_refresh_interval(captured, monkeypatch):
    captured(True)
    monkeypatch.setattr(progress, "REFRESH_S", 3600.0)
    shown = []
    monkeypatch.setattr(progress._display, "show", lambda phase: shown.append(phase.done))
    with progress.phase("steps", 10_000) as steps:
        for _ in range(10_000):
            steps.advance()
    assert shown == []  # 10,000 steps: no update pushed to rich inside the interval


def _fit(tiny_data, tmp_path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))
    cfg = make_cfg("logger=[]")
    fit(Scratch(model), tiny_data, cfg, epochs=2, seed=0, log_dir=tmp_path, label="teacher")


def test_training_on_a_terminal_shows_each_epochs_batches_and_the_bn_reestimation(
    captured, tiny_data, tmp_path
):
    out = captured(True)
    _fit(tiny_data, tmp_path)
    text = out.getvalue()
    assert "[teacher] epoch 2/2" in text and "5/5 batches" in text and BAR in text
    assert "[teacher] BatchNorm re-estimation: 5/5 batches in " in text
    assert text.count("[teacher] epoch ") >= 2  # the bar's rows and each epoch's line


def test_training_in_a_log_prints_one_line_per_epoch_and_per_phase(captured, tiny_data, tmp_path):
    out = captured(False)
    _fit(tiny_data, tmp_path)
    text = out.getvalue()
    assert "\r" not in text and BAR not in text
    epochs = [line for line in text.splitlines() if line.startswith("[teacher] epoch ")]
    assert [line.split("  ")[0] for line in epochs] == ["[teacher] epoch 1/2", "[teacher] epoch 2/2"]
    assert text.count("BatchNorm re-estimation: 5/5 batches in ") == 1


def test_the_epoch_line_shows_the_epochs_mean_loss_not_the_last_steps(captured, tiny_data, tmp_path):
    import csv

    out = captured(False)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 4))
    cfg = make_cfg("trainer.log_every_n_steps=1", "recalibrate_bn=false")
    fit(Scratch(model), tiny_data, cfg, epochs=1, seed=0, log_dir=tmp_path, label="t")
    with open(tmp_path / "metrics.csv") as handle:
        steps = [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert len(steps) == 5 and len(set(steps)) > 1
    (line,) = [line for line in out.getvalue().splitlines() if line.startswith("[t] epoch 1/1")]
    shown = float(line.split("train/loss ")[1].split()[0])
    assert shown == pytest.approx(sum(steps) / len(steps), abs=1e-4)


def test_a_python_warning_is_one_line_without_a_source_path(monkeypatch, capsys):
    import warnings

    from kdrun.cli import main

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # put back afterwards
    main(["--version"])
    line = warnings.formatwarning("a library complains", UserWarning, "/site-packages/lib/module.py", 123)
    assert line == "warning: UserWarning: a library complains\n"
