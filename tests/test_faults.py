"""Results a user can trust under faults and shared files: signals, concurrent runs, cache
integrity, hostile configs, report grouping, export checks, full or read-only disks."""

from datetime import datetime
from pathlib import Path

import hydra.core.utils
import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import save_file
from torch import nn

from kdrun.cache import Cache
from kdrun.logit_cache import load_or_compute
from kdrun.strategies import STRATEGIES


def _run_dirs(*overrides: str) -> tuple[str, str]:
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    return str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)


def test_runs_started_in_the_same_second_get_their_own_directories(monkeypatch):
    # Freeze the clock Hydra's `now` reads: what two jobs started together see.
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 1)

    monkeypatch.setattr(hydra.core.utils, "datetime", Frozen)
    first, second = _run_dirs(), _run_dirs()
    assert first[0] != second[0] and first[1] != second[1]
    assert first[0].startswith("outputs/runs/2026-01-01_00-00-00.000000-")


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_cache_entry_whose_files_changed_is_moved_aside_and_rebuilt(tmp_path, capsys):
    """Replaced weights (another valid model), a truncated file: caught by the digest, rebuilt."""
    cache, builds = Cache(tmp_path), []

    def build(folder: Path) -> None:
        builds.append(folder)
        save_file(_weights(nn.Linear(4, 2)), str(folder / "model.safetensors"))

    entry, _ = cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)
    good = (entry / "model.safetensors").read_bytes()
    save_file(_weights(nn.Linear(4, 2)), str(entry / "model.safetensors"))  # another valid model
    again, hit = cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)
    assert (again, hit, len(builds)) == (entry, False, 2)
    assert "model.safetensors" in capsys.readouterr().out
    (aside,) = tmp_path.glob("teacher/*.corrupt-*")
    assert (aside / "model.safetensors").read_bytes() != good  # kept for inspection
    (entry / "model.safetensors").write_bytes(good[:100])  # truncated
    assert cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)[1] is False
    assert cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)[1] is True  # intact: reused
    assert len(builds) == 3


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))


def test_altered_logits_are_rebuilt_and_non_finite_logits_are_never_stored(tiny_data, tmp_path):
    cache = Cache(tmp_path)
    first = STRATEGIES["vanilla"](_model(1), _model().eval(), T=4.0, alpha=0.9)
    assert load_or_compute(first, tiny_data, cache) == "computed"
    (file,) = tmp_path.glob("logits/*/logits.safetensors")
    save_file({"logits": torch.zeros_like(first.teacher_logits)}, str(file))  # values altered
    second = STRATEGIES["vanilla"](_model(1), _model().eval(), T=4.0, alpha=0.9)
    assert load_or_compute(second, tiny_data, cache) == "computed"
    assert torch.equal(second.teacher_logits, first.teacher_logits)

    broken = _model(2).eval()
    with torch.no_grad():
        broken[1].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        load_or_compute(STRATEGIES["vanilla"](_model(1), broken, T=4.0, alpha=0.9), tiny_data, cache)
    stored = [p for p in tmp_path.glob("logits/*/logits.safetensors") if ".corrupt-" not in str(p)]
    assert len(stored) == 1  # the good teacher's entry only
