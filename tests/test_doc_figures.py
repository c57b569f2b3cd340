"""Figures in the docs are generated from recorded runs: a doc that drifts from its record fails."""

import json
import shutil
from pathlib import Path

from kdrun.report import docfigs

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "records"


def test_every_doc_figure_matches_its_record():
    stale = docfigs.stale(REPO)
    assert not stale, f"{stale}: run `make docs` (python -m kdrun.report.docfigs) and commit"


def test_the_default_run_figure_is_generated_from_a_record():
    text = (REPO / "docs" / "performance.md").read_text()
    assert "<!-- figure: default_run table -->" in text
    assert "<!-- figure: default_seeds seeds -->" in (REPO / "docs" / "results.md").read_text()
    assert "<!-- figure: default_run estimate -->" in (REPO / "docs" / "cli" / "train.md").read_text()


def test_figures_do_not_depend_on_the_terminal(monkeypatch):
    for key, value in {"TERM": "dumb", "FORCE_COLOR": "1", "COLUMNS": "60", "NO_COLOR": "1"}.items():
        monkeypatch.setenv(key, value)
    assert docfigs.stale(REPO) == []


def test_every_record_says_when_where_and_how_it_was_made():
    names = sorted(p.stem for p in RECORDS.glob("*.json"))
    assert names, "no records"
    for name in names:
        record = json.loads((RECORDS / f"{name}.json").read_text())
        for key in ("command", "date", "commit", "machine"):
            assert record[key] and record[key] != "unknown", (name, key)
        assert record["runs"] and all(run["status"] == "ok" for run in record["runs"]), name


def test_a_changed_record_makes_the_doc_stale(tmp_path):
    shutil.copytree(RECORDS, tmp_path / "docs" / "records")
    shutil.copy(REPO / "docs" / "performance.md", tmp_path / "docs" / "performance.md")
    shutil.copy(REPO / "docs" / "results.md", tmp_path / "docs" / "results.md")
    (tmp_path / "README.md").write_text("# readme\n")
    assert docfigs.stale(tmp_path) == []
    path = tmp_path / "docs" / "records" / "default_run.json"
    record = json.loads(path.read_text())
    record["runs"][0]["student"]["top1"] += 0.01
    path.write_text(json.dumps(record))
    assert docfigs.stale(tmp_path) == ["docs/performance.md"]
    assert docfigs.main(["--repo", str(tmp_path), "--check"]) == 1
    assert docfigs.refresh(tmp_path) == [tmp_path / "docs" / "performance.md"]
    figure = (tmp_path / "docs" / "performance.md").read_text().split("default_run table")[1][:2000]
    assert "95.40" in figure and "94.40" not in figure
    assert docfigs.main(["--repo", str(tmp_path), "--check"]) == 0


def test_a_typed_edit_inside_a_figure_is_caught(tmp_path):
    shutil.copytree(RECORDS, tmp_path / "docs" / "records")
    doc = (REPO / "docs" / "results.md").read_text()
    assert "| +1.57 ± 0.64 |" in doc
    (tmp_path / "docs" / "results.md").write_text(doc.replace("| +1.57 ± 0.64 |", "| +1.20 ± 0.75 |"))
    (tmp_path / "README.md").write_text("# readme\n")
    assert docfigs.stale(tmp_path) == ["docs/results.md"]


def test_record_trims_a_run_and_stamps_it(tmp_path):
    run = json.loads((RECORDS / "default_run.json").read_text())["runs"][0]
    results = {**run, "paths": {"student": "/somewhere"}, "diagnostics": {}, "run_dir": "/x"}
    results["data"] = {**run["data"], "fingerprint": "abc"}
    source = tmp_path / "results.json"
    source.write_text(json.dumps(results))
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# readme\n")
    argv = ["--repo", str(tmp_path), "record", "r", str(source), "--command", "kdrun train"]
    argv += ["--commit", "abc1234"]
    assert docfigs.main(argv) == 0
    record = json.loads((tmp_path / "docs" / "records" / "r.json").read_text())
    assert record["runs"] == [run]
    stamp = (record["command"], record["commit"], record["date"])
    assert stamp == ("kdrun train", "abc1234", run["started_at"])
    assert "CPU cores" in record["machine"]
