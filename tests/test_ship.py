"""`kdrun ship`: the frontier over hand-made points, the plot's parts, the command's lines."""

import json
from pathlib import Path

import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Annotation

from kdrun.cli import main
from kdrun.report.frontier import Candidate, check_cost, frontier, latency_threads, recommend
from kdrun.report.frontier_plot import FRONTIER_LABEL, figure
from kdrun.report.ship import analyse, recommendation, rows


def test_frontier_keeps_what_no_other_point_beats_on_both():
    points = {"small": (0.90, 1.0), "mid": (0.95, 2.0), "slow": (0.93, 3.0), "big": (0.97, 4.0)}
    assert frontier(points) == ["small", "mid", "big"]  # slow: mid is more accurate and cheaper


def test_frontier_of_one_point_is_that_point():
    assert frontier({"only": (0.5, 10.0)}) == ["only"]


def test_ties_stay_on_the_frontier_and_equal_cost_keeps_the_more_accurate():
    points = {"a": (0.95, 2.0), "b": (0.95, 2.0), "c": (0.94, 2.0), "d": (0.95, 3.0)}
    assert frontier(points) == ["a", "b"]  # c: same cost, less accurate; d: same top-1, costlier


def test_an_int8_twin_slower_and_less_accurate_than_its_fp32_student_is_dominated():
    points = {"cnn": (0.97, 0.40), "cnn · int8": (0.968, 0.55), "mlp": (0.93, 0.05)}
    assert frontier(points) == ["mlp", "cnn"]


def test_recommend_the_cheapest_above_the_floor_or_the_most_accurate_within_the_budget():
    points = {"s": (0.90, 1.0), "m": (0.95, 2.0), "l": (0.97, 4.0)}
    latency = {"s": 0.1, "m": 0.2, "l": 0.4}
    assert recommend(points, latency, 0.94, None) == "m"
    assert recommend(points, latency, None, 0.3) == "m"
    assert recommend(points, latency, 0.96, 0.3) is None
    assert recommend(points, {"s": 0.1}, None, 0.5) == "s"  # no latency: cannot meet a budget


def test_latency_compares_only_one_setting_and_says_which_run_lacks_it():
    cands = [
        Candidate("a", top1=0.9, latency={(1, 1): 0.1, (64, 1): 2.0}),
        Candidate("b", top1=0.95, latency={(1, 1): 0.2}),
        Candidate("c", top1=0.99, latency={(1, 4): 0.05}),  # another thread count: not comparable
    ]
    assert latency_threads(cands, 1) == 1
    assert latency_threads(cands, 64) == 1
    assert latency_threads([], 1) is None


def _results(label: str, seed: int, top1: float, scratch: float, params: int, ms: float, **extra) -> dict:
    """A results.json as a finished run writes it, with the fields the frontier reads."""
    threads = extra.pop("threads", 1)
    latency = {"batch1": ms, "batch64": 20 * ms}
    return {
        "status": "ok",
        "seed": seed,
        "config": {
            "seed": seed,
            "student": {"name": "cnn", "args": {"channels": label}, "epochs": 10, "seed": seed},
            "teacher": {"name": "cnn"},
            "strategy": {"name": "vanilla"},
            "dataset": {"name": "digits"},
            "T": 4.0,
            "alpha": 0.9,
            "measure": {"batch_sizes": [1, 64], "threads": threads},
            "paths": {"output_root": "outputs"},
        },
        "student": {
            "name": "cnn",
            "top1": top1,
            "val_top1": top1,
            "params": params,
            "size_mb": params * 4 / 2**20,
            "flops": 10 * params,
            "latency_ms": extra.pop("latency", latency),
        },
        "baseline": {"name": "cnn", "top1": scratch},
        "deltas": {"kd_gain_top1": top1 - scratch},
        "teacher": {
            "name": "cnn",
            "arch_id": "t",
            "top1": 0.98,
            "params": 400_000,
            "size_mb": 1.6,
            "flops": 8_000_000,
            "latency_ms": {"batch1": 2.0, "batch64": 70.0},
        },
        **extra,
    }


def _int8(top1: float, ms: float, status: str = "ok") -> dict:
    entry = {
        "status": status,
        "file_mb": 0.01,
        "parity": {"top1": top1},
        "latency_ms": {"batch1": ms, "batch64": 9.0},
    }
    return {"export": {"threads": 1, "formats": {"onnx_int8": entry}}}


def _family(root: Path) -> Path:
    """Three widths over two seeds; the middle one exported int8 (slower than its fp32 here)."""
    widths = {
        "[2, 4]": (0.90, 0.88, 7000, 0.10),
        "[4, 8]": (0.95, 0.94, 13000, 0.20),
        "[8, 16]": (0.97, 0.96, 27000, 0.40),
    }
    for label, (top1, scratch, params, ms) in widths.items():
        for seed in (0, 1):
            extra = _int8(top1 - 0.01, 0.3) if label == "[4, 8]" else {}
            run = root / f"channels={label}" / f"seed{seed}"
            run.mkdir(parents=True)
            results = _results(label, seed, top1 + 0.002 * seed, scratch, params, ms, **extra)
            (run / "results.json").write_text(json.dumps(results))
    return root


def _runs(root: Path) -> list[dict]:
    from kdrun.report.runs import find

    return find(root)


def test_analyse_pools_seeds_and_puts_the_dominated_int8_off_the_frontier(tmp_path):
    shipping = analyse(_runs(_family(tmp_path)), "latency1")
    names = [s.name for s in shipping.students]
    assert names == [
        "cnn channels=[2, 4]",
        "cnn channels=[4, 8]",
        "cnn channels=[4, 8] · int8",
        "cnn channels=[8, 16]",
    ]
    mid = shipping.students[1]
    assert (
        mid.seeds == [0, 1]
        and mid.top1 == pytest.approx(0.951)
        and mid.top1_std == pytest.approx(0.0014142, rel=1e-3)
    )
    assert shipping.front == ["cnn channels=[2, 4]", "cnn channels=[4, 8]", "cnn channels=[8, 16]"]
    head, body = rows(shipping)
    narrow = dict(zip(head, body[1], strict=True))  # body[0]: the teacher, the reference
    assert narrow["top-1 %"] == "90.10 ± 0.14" and narrow["gain"] == "+2.10 ± 0.14"  # paired by seed
    assert narrow["seeds"] == "2" and dict(zip(head, body[0], strict=True))["frontier"] == "teacher"
    # On size the int8 file is the smallest and beats the narrowest fp32 student outright.
    by_size = analyse(_runs(tmp_path), "size").front
    assert by_size == ["cnn channels=[4, 8] · int8", "cnn channels=[4, 8]", "cnn channels=[8, 16]"]


def test_a_run_without_the_compared_latency_is_left_out_and_said(tmp_path):
    _family(tmp_path)
    odd = tmp_path / "other" / "seed0"
    odd.mkdir(parents=True)
    (odd / "results.json").write_text(json.dumps(_results("[1, 2]", 0, 0.8, 0.7, 3000, 0.05, threads=4)))
    shipping = analyse(_runs(tmp_path), "latency1")
    assert "cnn channels=[1, 2]" not in shipping.points
    assert any(
        "cnn channels=[1, 2]: no latency at batch 1 with 1 thread(s) (measured: batch 1 with 4 thread(s)"
        in note
        for note in shipping.notes
    )
    missing = analyse(
        [r | {"student": r["student"] | {"latency_ms": {}}} for r in _runs(tmp_path)], "latency64"
    )
    assert missing.front == ["cnn channels=[4, 8] · int8"] and len(missing.notes) >= 3


def test_the_plot_draws_frontier_arrows_error_bars_and_the_teacher(tmp_path):
    shipping = analyse(_runs(_family(tmp_path)), "latency1")
    ax = figure(shipping).axes[0]
    (front,) = [line for line in ax.get_lines() if line.get_label() == FRONTIER_LABEL]
    assert list(front.get_xdata()) == [0.10, 0.20, 0.40] and front.get_drawstyle() == "steps-post"
    arrows = [a for a in ax.texts if isinstance(a, Annotation) and a.arrow_patch is not None]
    assert len(arrows) == 3  # one per fp32 student: scratch -> distilled
    assert [(a.xyann[1], a.xy[1]) for a in arrows][0] == pytest.approx((88.0, 90.1))
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3 * 2 + 1  # scratch and distilled per student, one int8 twin
    assert all(c.has_yerr for c in bars)  # two seeds each: a std to draw
    (teacher,) = [line for line in ax.get_lines() if line.get_label().startswith("teacher cnn: 98.00%")]
    assert set(teacher.get_ydata()) == {98.0}


def test_bad_cost_names_the_closest_and_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ship", str(_family(tmp_path)), "--cost", "latency"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--cost='latency': did you mean latency1? allowed: latency1, latency64, size, flops, params" in err
    with pytest.raises(Exception, match="did you mean flops"):
        check_cost("flop")


def test_no_runs_found_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["ship", str(tmp_path / "empty")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds no finished run" in err


def test_ship_prints_the_pick_and_its_export_command(tmp_path, capsys):
    main(["ship", str(_family(tmp_path)), "--min-accuracy", "94", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    pick = next(line for line in out.splitlines() if line.startswith("ship: "))
    assert "cnn channels=[4, 8] · top-1 95.10 ± 0.14%" in pick and "seed1" in pick
    assert f"next: kdrun export '{tmp_path}/channels=[4, 8]/seed1' --format onnx" in out
    assert {p.name for p in tmp_path.iterdir()} >= {"frontier.png", "frontier.md", "frontier.csv"}
    with pytest.raises(SystemExit) as exit_info:
        main(["ship", str(tmp_path), "--min-accuracy", "99.5"])
    assert exit_info.value.code == 1


def test_report_html_shows_the_frontier_when_the_runs_hold_several_students(tmp_path):
    from kdrun.report.command import report

    report(_family(tmp_path), html=True)
    assert (tmp_path / "frontier.png").read_bytes().startswith(b"\x89PNG")
    page = (tmp_path / "report.html").read_text()
    section = page.split('<h2 id="frontier">Which student to ship</h2>')[1].split("<h2")[0]
    assert section.count("<img") == 1 and section.count(">★<") == 3 and "teacher cnn" in section
    one = tmp_path / "one"
    for seed in (0, 1):  # one student over two seeds: nothing to choose between, no frontier
        (one / f"seed{seed}").mkdir(parents=True)
        (one / f"seed{seed}" / "results.json").write_text(
            json.dumps(_results("[4, 8]", seed, 0.95, 0.94, 1, 0.2))
        )
    report(one, html=True)
    assert not (one / "frontier.png").exists() and "Which student" not in (one / "report.html").read_text()


def test_an_exported_onnx_file_is_a_student_of_its_own_and_a_failed_int8_is_left_out(tmp_path):
    runs = _runs(_family(tmp_path))
    for run in runs:
        if run["config"]["student"]["args"]["channels"] == "[4, 8]":
            formats = run["export"]["formats"]
            formats["onnx"] = formats["onnx_int8"] | {"parity": {"top1": run["student"]["top1"]}}
            formats["onnx"]["latency_ms"] = {"batch1": 0.15, "batch64": 3.0}
            formats["onnx_int8"] |= {"status": "failed", "error": "int8 top-1 drop 1.20 pts > 1.0"}
    shipping = analyse(runs, "latency1", min_accuracy=0.94)
    assert shipping.front == ["cnn channels=[2, 4]", "cnn channels=[4, 8] · onnx", "cnn channels=[8, 16]"]
    assert "cnn channels=[4, 8] · int8" not in [s.name for s in shipping.students]
    assert sum("int8 top-1 drop 1.20 pts > 1.0" in note for note in shipping.notes) == 2  # one per seed
    assert shipping.chosen.name == "cnn channels=[4, 8] · onnx"
    line, command = recommendation(shipping)
    assert command == f"kdrun export '{tmp_path}/channels=[4, 8]/seed1' --format onnx"
    ax = figure(shipping).axes[0]
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 3 * 2 + 1  # the onnx twin


def test_labels_from_configs_are_text_in_every_output(tmp_path, capsys):
    from kdrun.report.ship_command import _csv_cell, csv_text, markdown

    for seed, label in enumerate(("[bold]x|y", "=1+2")):
        (tmp_path / f"r{seed}").mkdir()
        (tmp_path / f"r{seed}" / "results.json").write_text(
            json.dumps(_results(label, seed, 0.9 + seed / 100, 0.9, 1000 + seed, 0.1))
        )
    shipping = analyse(_runs(tmp_path), "params")
    assert "cnn channels=[bold]x\\|y" in markdown(shipping)
    assert "cnn channels==1+2" in csv_text(shipping)
    assert _csv_cell("=1+2") == "'=1+2" and _csv_cell("-0.30") == "-0.30"
    main(["ship", str(tmp_path)])
    assert "cnn channels=[bold]x|y" in capsys.readouterr().out  # printed, not read as markup


def test_a_run_on_a_gpu_adds_its_device_latency_columns(tmp_path):
    _family(tmp_path)
    runs = _runs(tmp_path)
    runs[0]["student"] |= {"device": "cuda", "device_latency_ms": {"batch1": 0.05, "batch64": 0.07}}
    head, body = rows(analyse(runs, "latency1"))
    assert head[-3:] == ["cuda ms @1", "cuda ms @64", "frontier"]
    first = next(row for row in body if row[0] == "cnn channels=[2, 4]")
    assert first[-3:-1] == ["0.050", "0.070"]
    assert all(row[-3:-1] == ["-", "-"] for row in body if row[0] != "cnn channels=[2, 4]")
