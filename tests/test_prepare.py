"""Rejections that need the data (run.prepare): one KdrunConfigError naming the key, nothing trained."""

import pytest
import torch
from omegaconf import OmegaConf

import kdrun.data.sources as sources
from kdrun.data import build_datamodule
from kdrun.data.sources import Source
from kdrun.errors import KdrunConfigError
from kdrun.models import create_model, save_weights
from kdrun.train.prepare import prepare
from tests.conftest import make_cfg


def test_student_limit_above_the_training_images_is_rejected():
    with pytest.raises(
        KdrunConfigError, match=r"^kd\.student_limit=100000: must be null or an integer in \[1, "
    ):
        prepare(make_cfg("debug=smoke", "kd.student_limit=100000"))


def test_an_empty_data_set_is_rejected(monkeypatch):
    def empty(cfg):
        return Source((torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long)), [])

    monkeypatch.setitem(sources.DATASETS, "mnist_subset", empty)
    with pytest.raises(KdrunConfigError, match=r"^dataset\.name='mnist_subset': the data set is empty$"):
        build_datamodule(make_cfg().dataset)


def test_a_teacher_checkpoint_for_another_class_count_is_rejected(tmp_path):
    cfg = make_cfg("debug=smoke", "teacher=cnn")
    seven_classes = create_model(OmegaConf.to_container(cfg.teacher), 7, (1, 28, 28))
    save_weights(seven_classes, tmp_path / "teacher.safetensors")
    cfg = make_cfg("debug=smoke", "teacher=cnn", f"teacher.checkpoint={tmp_path / 'teacher.safetensors'}")
    with pytest.raises(KdrunConfigError, match=r"^teacher\.checkpoint=.*does not fit the configured model"):
        prepare(cfg)
