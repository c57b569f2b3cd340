"""student=timm / teacher=timm: any timm model by name, built by timm.create_model."""

import json
from pathlib import Path

import pytest
import torch

from kdrun.errors import KdrunConfigError
from kdrun.models import create_model
from kdrun.train.validate import validate
from tests.conftest import make_cfg

timm = pytest.importorskip("timm", reason="timm is not installed (pip install 'kdrun[timm]')")


def test_timm_config_builds_the_named_model_for_the_data():
    cfg = make_cfg("student=timm", "teacher=timm", "teacher.name=mobilenetv3_small_050")
    validate(cfg)
    assert cfg.student.name == "efficientnet_lite0" and cfg.student.library == "timm"
    model = create_model(cfg.student, num_classes=10, input_shape=(1, 28, 28))
    assert type(model).__module__.startswith("timm.")
    assert model.conv_stem.in_channels == 1  # timm's own stem adaptation (in_chans)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_timm_name_suggests_close_ones():
    with pytest.raises(
        KdrunConfigError, match=r"^student.name='efficientnet_lit0': not a timm model \(closest: "
    ):
        validate(make_cfg("student=timm", "student.name=efficientnet_lit0"))
    with pytest.raises(KdrunConfigError, match=r"^student.library='keras': allowed: timm"):
        validate(make_cfg("student=timm", "student.library=keras"))


def test_missing_timm_names_the_extra(monkeypatch):
    import kdrun.models.factory

    monkeypatch.setattr(kdrun.models.factory, "find_spec", lambda name: None)
    with pytest.raises(
        KdrunConfigError, match=r"^teacher.library='timm': needs timm: pip install 'kdrun\[timm\]'"
    ):
        validate(make_cfg("teacher=timm"))


def test_timm_student_trains_in_a_smoke_run(tmp_path, shared_cache):
    from kdrun import train

    results = train(
        [
            "debug=smoke",
            "student=timm",
            "student.name=test_efficientnet",
            "dataset.limit=64",  # the pipeline, not the accuracy: one step per phase
            "measure.batch_sizes=[1]",
            f"paths.output_root={tmp_path}",
            f"paths.cache_dir={shared_cache}",
        ],
        run_dir=tmp_path / "run",
    )
    assert results["student"]["name"] == "test_efficientnet"
    assert results["student"]["params"] == sum(
        p.numel() for p in timm.create_model("test_efficientnet", num_classes=10, in_chans=1).parameters()
    )
    spec = json.loads((Path(results["paths"]["baseline"]) / "spec.json").read_text())
    assert spec["model"]["library"] == "timm"  # part of the scratch baseline's cache key


def test_layers_of_the_timm_config_come_from_the_timm_model():
    from kdrun.commands.layers import layers

    table = layers("timm", image_size=28, channels=1, num_classes=10)
    assert "model/timm.yaml as student" in str(table.title)
    assert "conv_stem" in table.columns[0]._cells  # efficientnet_lite0's stem, as timm names it
