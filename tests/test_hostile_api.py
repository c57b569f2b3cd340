"""Hostile input to kdrun's entry points: paths that are not files, and the Python API."""

import pytest
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.models import load_weights
from kdrun.train.validate import validate
from tests.conftest import make_cfg


@pytest.mark.parametrize(("path", "what"), [("/dev/zero", "a device, FIFO or socket"), ("DIR", "a folder")])
def test_a_checkpoint_that_is_a_device_or_a_folder_is_not_a_regular_file(tmp_path, path, what):
    path = str(tmp_path) if path == "DIR" else path
    with pytest.raises(KdrunConfigError, match=rf"teacher\.checkpoint=.*: not a regular file \({what}\)"):
        validate(make_cfg(f"teacher.checkpoint={path}"))
    with pytest.raises(KdrunConfigError, match=rf"not a regular file \({what}\)"):
        load_weights(nn.Linear(2, 2), path, "student.checkpoint")
    with pytest.raises(KdrunConfigError, match="file does not exist"):
        validate(make_cfg(f"teacher.checkpoint={tmp_path / 'absent.pt'}"))
