"""Soft-label files are someone else's: read without running code, checked against the data."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from kdrun.data.soft_labels import read_soft_labels, write_soft_labels
from kdrun.errors import KdrunConfigError


def _logits(n: int = 40, classes: int = 4) -> torch.Tensor:
    return torch.randn(n, classes, generator=torch.Generator().manual_seed(0))


def test_round_trip_returns_the_logits_in_sample_order(tiny_data, tmp_path):
    logits = _logits()
    write_soft_labels(tmp_path / "l.safetensors", logits, tiny_data, teacher="cnn", dataset="tiny")
    assert torch.equal(read_soft_labels(tmp_path / "l.safetensors", tiny_data), logits)


def test_rows_in_any_order_are_put_back_by_sample_id(tiny_data, tmp_path):
    logits, order = _logits(), torch.randperm(40, generator=torch.Generator().manual_seed(1))
    save_file(
        {"logits": logits[order], "ids": order},
        str(tmp_path / "l.safetensors"),
        metadata={"fingerprint": "tiny"},
    )
    assert torch.equal(read_soft_labels(tmp_path / "l.safetensors", tiny_data), logits)


@pytest.mark.parametrize(
    ("tensors", "metadata", "message"),
    [
        ({"logits": _logits(classes=3), "ids": torch.arange(40)}, {"fingerprint": "tiny"}, "has 3 classes"),
        ({"logits": _logits(), "ids": torch.arange(1, 41)}, {"fingerprint": "tiny"}, "sample ids must be"),
        ({"logits": _logits(30), "ids": torch.arange(30)}, {"fingerprint": "tiny"}, "sample ids must be"),
        ({"logits": _logits()}, {"fingerprint": "tiny"}, "missing tensor"),
        (
            {"logits": _logits(), "ids": torch.arange(40)},
            {"fingerprint": "other"},
            "fingerprint other differs",
        ),
        ({"logits": _logits(), "ids": torch.arange(40)}, {}, "fingerprint None differs"),
    ],
)
def test_a_file_that_does_not_fit_the_data_is_refused(tiny_data, tmp_path, tensors, metadata, message):
    save_file(tensors, str(tmp_path / "l.safetensors"), metadata=metadata)
    with pytest.raises(KdrunConfigError, match=message) as info:
        read_soft_labels(tmp_path / "l.safetensors", tiny_data)
    assert info.value.key == "strategy.path"


def test_nan_and_inf_are_refused_naming_the_first_sample(tiny_data, tmp_path):
    logits = _logits()
    logits[7, 2], logits[9, 0] = float("nan"), float("inf")
    write_soft_labels(tmp_path / "l.safetensors", logits, tiny_data, teacher="cnn", dataset="tiny")
    with pytest.raises(KdrunConfigError, match="2 rows hold NaN or inf \\(first: sample id 7\\)"):
        read_soft_labels(tmp_path / "l.safetensors", tiny_data)


class _Payload:
    """Unpickling it creates a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_is_refused_without_running_it(tiny_data, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"logits": _Payload(str(marker))}))
    with pytest.raises(KdrunConfigError, match="not a safetensors file.*pickle .* refused"):
        read_soft_labels(path, tiny_data)
    assert not marker.exists()


def test_the_fingerprint_check_can_be_turned_off(tiny_data, tmp_path):
    save_file({"logits": _logits(), "ids": torch.arange(40)}, str(tmp_path / "l.safetensors"))
    assert read_soft_labels(tmp_path / "l.safetensors", tiny_data, check_fingerprint=False).shape == (40, 4)
