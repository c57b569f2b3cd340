"""The task function: a failure after validation is recorded, never half-written."""

import json

import pytest

import kdrun.train.phases as phases
import kdrun.train.pipeline as run_module
from kdrun.errors import KdrunConfigError
from tests.conftest import make_cfg


def test_failure_after_validation_writes_a_failed_results_json(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("loss became NaN")

    monkeypatch.setattr(phases, "fit", crash)
    cfg = make_cfg("debug=smoke", f"paths.output_root={tmp_path}")
    with pytest.raises(RuntimeError, match="NaN"):
        run_module.train(cfg, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed"
    assert results["error"] == "RuntimeError: loss became NaN"
    assert results["config"]["kd"]["T"] == 4.0
    assert not list((tmp_path / "run").glob(".results.json*"))  # no temp file left behind


def test_model_that_cannot_take_the_input_size_is_rejected_before_training(tmp_path):
    cfg = make_cfg(
        "debug=smoke",
        "dataset=digits",
        "dataset.image_size=2",
        "teacher=cnn",
        f"paths.output_root={tmp_path}",
    )
    with pytest.raises(KdrunConfigError, match=r"^teacher\.name='cnn': cannot run on inputs of shape"):
        run_module.train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
