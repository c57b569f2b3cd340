"""The run's wall time, estimated before training from a few timed steps per model."""

import io
import re

import pytest

from kdrun.console import console
from kdrun.train.pipeline import train
from tests.conftest import make_cfg

PHASES = ("baseline", "teacher", "student", "evaluate")


@pytest.fixture
def printed(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(console, "_file", out)  # undone to None: follow sys.stdout again
    return out


def test_the_estimate_is_within_a_factor_of_two_of_the_measured_time(tmp_path, printed):
    """A small job shaped like the default one (cnn teacher, mlp student, the embedded digits):
    the estimate printed before training against the phases' measured wall time, same process."""
    cfg = make_cfg(
        "dataset.limit=1024",
        "teacher.epochs=2",
        "epochs=3",
        "measure.min_run_time=0.1",
        "logger=[]",
        "estimate.warn_minutes=0.01",  # 0.6 s: the warning line shows, and the run goes on
        f"paths.output_root={tmp_path}",
    )
    results = train(cfg, tmp_path / "run")
    measured = sum(results["timings_s"][name] for name in PHASES)
    predicted = results["estimate"]["seconds"]
    text = printed.getvalue()
    assert text.count("estimate: ~") == 1 and re.search(r"measured on \d+(-\d+)? steps per model", text)
    assert "estimate: over 0.01 minutes on a CPU" in text and results["status"] == "ok"
    assert 0.5 <= predicted / measured <= 2.0, (
        predicted,
        measured,
        results["estimate"],
        results["timings_s"],
    )


def test_a_cached_phase_counts_as_nothing_and_estimate_only_trains_nothing(tmp_path, printed, shared_cache):
    smoke = ("debug=smoke", f"paths.cache_dir={shared_cache}", f"paths.output_root={tmp_path}", "logger=[]")
    train(make_cfg(*smoke, "estimate.steps=0"), tmp_path / "first")  # teacher and baseline cached
    assert "estimate: ~" not in printed.getvalue()  # estimate.steps=0: none
    result = train(make_cfg(*smoke, "estimate.only=true"), tmp_path / "second")
    assert result["status"] == "estimate" and result["estimate"]["parts_s"]["teacher"] == 0.0
    assert "teacher 0 (cached)" in printed.getvalue()
    assert not (tmp_path / "second").exists()  # nothing trained, nothing written


def test_kdrun_train_estimate_prints_it_and_stops(tmp_path, monkeypatch, printed):
    from kdrun.cli import main

    monkeypatch.chdir(tmp_path)
    main(["train", "--estimate", "debug=smoke", "logger=[]"])
    assert "estimate: ~" in printed.getvalue()
    assert not list(tmp_path.rglob("results.json"))
