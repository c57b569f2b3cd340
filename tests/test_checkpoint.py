"""Loading weights others give us: every supported format, and refusals that name the key."""

import os
import pickle

import pytest
import torch
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.models import load_weights, save_weights


def _net(out: int = 3) -> nn.Module:
    torch.manual_seed(out)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, out))


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_safetensors_round_trip(tmp_path):
    src = _net()
    save_weights(src, tmp_path / "w.safetensors")
    dst = load_weights(
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), tmp_path / "w.safetensors", "k"
    )
    assert _same(src, dst)


def test_plain_state_dict(tmp_path):
    src = _net()
    torch.save(src.state_dict(), tmp_path / "w.pt")
    assert _same(src, load_weights(_net(out=3), tmp_path / "w.pt", "k"))


def test_lightning_checkpoint_with_wrapper_prefix(tmp_path):
    src = _net()
    state = {f"strategy.student.{k}": v for k, v in src.state_dict().items()}
    state["strategy.teacher.0.weight"] = torch.zeros(1)  # other modules in the checkpoint are ignored
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "last.ckpt")
    assert _same(src, load_weights(_net(), tmp_path / "last.ckpt", "k"))


class _Nested(nn.Module):
    """The model's first key ``stem.weight`` also ends a submodule's key that sorts before it
    (``block.stem.weight``), as a WRN's ``conv1.weight`` ends ``block1.layer.0.conv1.weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.block = nn.Module()
        self.block.stem = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)


def test_a_key_that_ends_another_key_is_not_taken_for_a_prefix(tmp_path):
    """safetensors stores keys sorted: the whole model loads, not the submodule under ``block.``."""
    src = _Nested()
    save_weights(src, tmp_path / "w.safetensors")
    assert _same(src, load_weights(_Nested(), tmp_path / "w.safetensors", "k"))
    wrapped = {f"model.{k}": v for k, v in sorted(src.state_dict().items())}
    torch.save({"state_dict": wrapped}, tmp_path / "last.ckpt")
    assert _same(src, load_weights(_Nested(), tmp_path / "last.ckpt", "k"))


def test_the_prefix_that_holds_exactly_the_model_wins_over_a_larger_one(tmp_path):
    """A checkpoint holding a deeper teacher first, then the student: both hold every student key;
    the student's prefix has nothing else."""
    src, teacher = _net(), nn.Sequential(*_net(), nn.ReLU(), nn.Linear(3, 3))
    state = {f"strategy.teacher.{k}": v for k, v in teacher.state_dict().items()}
    state |= {f"strategy.student.{k}": v for k, v in src.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "last.ckpt")
    assert _same(src, load_weights(_net(), tmp_path / "last.ckpt", "k"))


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(KdrunConfigError, match=r"^teacher\.checkpoint=.*file does not exist"):
        load_weights(_net(), tmp_path / "absent.pt", "teacher.checkpoint")


def test_class_count_mismatch_is_a_clear_error(tmp_path):
    torch.save(_net(out=10).state_dict(), tmp_path / "w.pt")
    with pytest.raises(KdrunConfigError, match="does not fit the configured model"):
        load_weights(_net(out=3), tmp_path / "w.pt", "teacher.checkpoint")


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"weight": _Payload(str(marker))}, handle)
    with pytest.raises(KdrunConfigError, match="refused"):
        load_weights(_net(), tmp_path / "evil.pt", "teacher.checkpoint")
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file_is_a_clear_error(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(_net().state_dict(), path)
    else:
        save_weights(_net(), path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(KdrunConfigError, match="unreadable or corrupt"):
        load_weights(_net(), path, "teacher.checkpoint")


def test_a_module_registered_twice_saves_and_loads(tmp_path):
    """FX quantisation shares one fake quantisation between ops: its tensors appear under two keys."""
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    save_weights(model, tmp_path / "w.safetensors")
    fresh_shared = nn.Linear(3, 3)
    fresh = load_weights(
        nn.Sequential(fresh_shared, nn.ReLU(), fresh_shared), tmp_path / "w.safetensors", "k"
    )
    x = torch.randn(4, 3)
    assert torch.equal(fresh(x), model(x))
