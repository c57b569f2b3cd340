"""Text from users printed by kdrun: rich markup read as typed, control characters shown as escapes,
CSV cells that a spreadsheet would run as formulas, Markdown and HTML in summary.md."""

import csv
import json
from pathlib import Path

import pytest

from kdrun.cli import main
from kdrun.console import fail

MARKUP = "[red]5[/red] [/x]"
CONTROL = "\x1b[2J\x07\rgone\nnext"


def test_an_error_line_prints_markup_and_closing_tags_as_typed(capsys):
    with pytest.raises(SystemExit) as info:
        fail(f"T={MARKUP}: must be a number")
    assert info.value.code == 2
    assert capsys.readouterr().err == f"error: T={MARKUP}: must be a number\n"
    with pytest.raises(SystemExit):
        fail(f"dataset.root={CONTROL}: does not exist")
    assert capsys.readouterr().err == "error: dataset.root=\\x1b[2J\\x07\\rgone\\nnext: does not exist\n"


def test_a_bad_value_with_markup_on_the_command_line_is_one_line_as_typed(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "T='[red]5[/red] [/x]'"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and MARKUP in err[0], err


def _hostile_run(root: Path, name: str, status: str = "ok") -> Path:
    """A results.json as a run folder from someone else may hold it: markup and control characters."""
    run = root / name
    run.mkdir(parents=True)
    config = {
        "strategy": {"name": MARKUP},
        "teacher": {"name": CONTROL},
        "student": {"name": '=HYPERLINK("http://x","y")', "epochs": 1},
        "dataset": {"name": "a|b<script>alert(1)</script>"},
        "T": 4.0,
        "alpha": 0.9,
        "seed": 0,
    }
    model = {"top1": 0.5, "params": 10, "latency_ms": {"batch1": 0.1}, "name": "m"}
    results = {
        "status": status,
        "config": config,
        "started_at": "2026-01-01T00:00:00+00:00",
        "seed": 0,
        "student": model,
        "baseline": model,
        "teacher": model,
        "deltas": {"kd_gain_top1": 0.0},
    }
    if status != "ok":
        results["error"] = f"ValueError: {MARKUP} {CONTROL}"
    (run / "results.json").write_text(json.dumps(results))
    return run


def _assert_shown_as_text(out: str) -> None:
    assert "[red]5[/red]" in out and "[/x]" in out  # markup printed as typed
    for char in "\x1b\x07\r":
        assert char not in out, repr(char)
    assert "\\x1b[2J\\x07\\rgone\\nnext" in out  # shown as escapes, on one line


def test_kdrun_runs_shows_hostile_values_and_folder_names_as_text(tmp_path, capsys, monkeypatch):
    _hostile_run(tmp_path, "[/x]\x1b[31mrun")
    monkeypatch.chdir(tmp_path)  # short run folder paths: the column does not fold them
    main(["runs", "."])
    out = capsys.readouterr().out
    _assert_shown_as_text(out)
    assert "[/x]\\x1b[31mrun" in out


def test_kdrun_runs_compare_shows_hostile_values_as_text(tmp_path, capsys):
    first = _hostile_run(tmp_path, "a[/x]")
    second = _hostile_run(tmp_path, "b")
    data = json.loads((second / "results.json").read_text())
    data["config"]["T"] = "[bold]\x1b]0;title\x07"
    (second / "results.json").write_text(json.dumps(data))
    main(["runs", "--compare", str(first), str(second)])
    out = capsys.readouterr().out
    assert "[bold]\\x1b]0;title\\x07" in out and "\x1b" not in out


def test_kdrun_report_shows_hostile_values_and_failed_runs_as_text(tmp_path, capsys):
    _hostile_run(tmp_path, "ok[/x]")
    _hostile_run(tmp_path, "failed", status="failed")
    other = _hostile_run(tmp_path, "other")  # another point: a config key that differs becomes a column
    data = json.loads((other / "results.json").read_text())
    data["config"]["student"][f"k{CONTROL}|"] = 1
    (other / "results.json").write_text(json.dumps(data))
    main(["report", str(tmp_path)])
    captured = capsys.readouterr()
    _assert_shown_as_text(captured.out)
    assert "\x1b" not in captured.err


def test_summary_csv_cells_cannot_start_a_formula_and_summary_md_escapes_pipes_and_html(tmp_path):
    from kdrun.report.command import report

    run = _hostile_run(tmp_path, "run")
    data = json.loads((run / "results.json").read_text())
    data["config"]["strategy"]["name"] = "a|b<script>alert(1)</script>"
    (run / "results.json").write_text(json.dumps(data))
    report(tmp_path)
    (row,) = csv.DictReader((tmp_path / "summary.csv").open())
    assert row["student"] == '\'=HYPERLINK("http://x","y")'
    assert row["T"] == "4.0"  # numbers are written as numbers
    md = (tmp_path / "summary.md").read_text()
    assert "| a\\|b&lt;script&gt;alert(1)&lt;/script&gt; |" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    header, _, body = table
    assert body.count(" | ") == header.count(" | ")  # a | in a value does not add a column
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "\x1b" not in md and "\n" not in body


@pytest.mark.parametrize(
    ("value", "shown"),
    [("plain", "plain"), ("tab\there", "tab\\there"), ("\u202eevil", "\\u202eevil"), ("é ü", "é ü")],
)
def test_plain_escapes_only_what_a_terminal_would_act_on(value, shown):
    from kdrun.console import plain

    assert plain(value) == shown


def _sweep_point(root: Path, name: str, T, status: str = "ok") -> None:
    config = {
        "strategy": {"name": "vanilla"},
        "teacher": {"name": "cnn"},
        "student": {"name": "mlp", "epochs": 1},
        "dataset": {"name": "digits"},
        "T": T,
        "alpha": 0.9,
        "seed": 0,
    }
    model = {"top1": 0.5, "params": 10, "latency_ms": {"batch1": 0.1}, "name": "m"}
    results = {"status": status, "config": config, "student": model, "baseline": model, "teacher": model}
    results["deltas"] = {"kd_gain_top1": 0.01}
    if status != "ok":
        results["error"] = f"KdrunConfigError: T={T}: must be a number > 0"
    (root / name).mkdir()
    (root / name / "results.json").write_text(json.dumps(results))


def _sweep_config(root: Path):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(root)}, "sweeper": {}, "overrides": {"task": ["T=1,2,abc"]}}}
    )


def test_a_sweep_with_a_failed_point_that_is_not_a_number_reports_it_and_exits_1(tmp_path, capsys):
    from kdrun.training.sweep import SweepProgress

    _sweep_point(tmp_path, "0", 1.0)
    _sweep_point(tmp_path, "1", 2.0)
    _sweep_point(tmp_path, "2", "abc", status="failed")
    with pytest.raises(SystemExit) as info:
        SweepProgress().on_multirun_end(_sweep_config(tmp_path))
    assert info.value.code == 1
    out = capsys.readouterr().out
    assert "failed: " in out and "T=abc" in out and "1 failed" in out
    assert "| abc |" in (tmp_path / "summary.md").read_text()  # the failed point is a row
    assert (tmp_path / "heatmap.png").is_file()  # of the points that have numbers


def test_sigterm_between_sweep_points_exits_143_naming_the_finished_points(tmp_path, capsys):
    import os
    import signal

    from kdrun.training.sweep import SweepProgress

    class NotHandled(Exception):
        pass

    def sentinel(signum, frame):
        raise NotHandled

    _sweep_point(tmp_path, "0", 1.0)
    before = signal.signal(signal.SIGTERM, sentinel)  # stands in for "the process dies silently"
    progress = SweepProgress()
    try:
        progress.on_multirun_start(_sweep_config(tmp_path))
        with pytest.raises(SystemExit) as info:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.1)  # a point where the handler runs
    finally:
        signal.signal(signal.SIGTERM, before)
    assert info.value.code == 143
    err = capsys.readouterr().err
    assert "SIGTERM between sweep points" in err and "1 point(s) finished (0)" in err
    assert f"hydra.sweep.dir={tmp_path}" in err and "continue with: kdrun train" in err
