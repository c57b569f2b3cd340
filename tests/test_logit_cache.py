"""The teacher-logit cache: identical to the live teacher, shared on disk, invalidated by what matters."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from kdrun.cache import Cache
from kdrun.cache.logits import load_or_compute, model_digest
from kdrun.data import TensorDataModule
from kdrun.models.ensemble import TeacherEnsemble
from kdrun.strategies import STRATEGIES


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))


def _vanilla(teacher: nn.Module) -> nn.Module:
    return STRATEGIES["vanilla"](_model(1), teacher, T=4.0, alpha=0.9)


def test_cached_logits_equal_the_live_teacher_bitwise(tiny_data: TensorDataModule, tmp_path: Path) -> None:
    teacher = _model().eval()
    strategy = _vanilla(teacher)
    assert load_or_compute(strategy, tiny_data, Cache(tmp_path)) == "computed"
    for x, _, index in tiny_data.loader("train", shuffle=True):  # shuffled batches, as in training
        with torch.no_grad():
            assert torch.equal(strategy.teacher_outputs(x, index), teacher(x))


def test_second_run_reads_the_same_tensor_from_disk(tiny_data: TensorDataModule, tmp_path: Path) -> None:
    first, second = _vanilla(_model()), _vanilla(_model())
    assert load_or_compute(first, tiny_data, Cache(tmp_path)) == "computed"
    assert load_or_compute(second, tiny_data, Cache(tmp_path)) == "disk"
    assert torch.equal(first.teacher_logits, second.teacher_logits)
    assert len(list((tmp_path / "logits").glob("*/logits.safetensors"))) == 1


def test_cache_is_invalidated_by_teacher_data_and_temperature(
    tiny_data: TensorDataModule, tmp_path: Path
) -> None:
    cache = Cache(tmp_path)
    assert load_or_compute(_vanilla(_model()), tiny_data, cache) == "computed"
    assert load_or_compute(_vanilla(_model()), tiny_data, cache) == "disk"
    other_weights = _model()
    with torch.no_grad():
        other_weights[1].weight[0, 0] += 1e-3
    assert load_or_compute(_vanilla(other_weights), tiny_data, cache) == "computed"
    # The same images, normalised differently (another transform): other inputs, other entry.
    x, y = tiny_data.splits["train"]
    scaled = TensorDataModule(
        (x * 2, y), tiny_data.splits["val"], tiny_data.splits["test"], tiny_data.classes, 8, "tiny-x2"
    )
    assert load_or_compute(_vanilla(_model()), scaled, cache) == "computed"
    # An ensemble's output depends on its temperature, which is not a weight.
    members = [_model(3), _model(4)]
    assert load_or_compute(_vanilla(TeacherEnsemble(members, T=4.0)), tiny_data, cache) == "computed"
    assert load_or_compute(_vanilla(TeacherEnsemble(members, T=4.0)), tiny_data, cache) == "disk"
    assert load_or_compute(_vanilla(TeacherEnsemble(members, T=2.0)), tiny_data, cache) == "computed"


def test_digest_ignores_the_object_but_not_the_weights() -> None:
    assert model_digest(_model(0)) == model_digest(_model(0))
    assert model_digest(_model(0)) != model_digest(_model(1))
    batchnorm = nn.BatchNorm1d(3)  # holds a 0-dim buffer (num_batches_tracked)
    assert model_digest(batchnorm) == model_digest(nn.BatchNorm1d(3))


def test_strategies_without_cacheable_logits_are_left_alone(
    tiny_data: TensorDataModule, tmp_path: Path
) -> None:
    scratch = STRATEGIES["scratch"](_model())
    assert load_or_compute(scratch, tiny_data, Cache(tmp_path)) is None
    assert not (tmp_path / "logits").exists()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import run_kdrun

    cwd = tmp_path_factory.mktemp("logits")
    args = [
        "train",
        "-m",
        "debug=smoke",
        "dataset.limit=128",
        "threads=1",
        "T=2,4",
        "kd.cache_logits=true,false",
    ]
    proc = run_kdrun(args, cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd


def _points(cwd: Path) -> dict[tuple[float, bool], dict]:
    out = {}
    for path in (cwd / "outputs" / "multirun").glob("*/*/results.json"):
        results = json.loads(path.read_text())
        out[(results["config"]["T"], results["config"]["kd"]["cache_logits"])] = results
    return out


def test_sweep_points_share_the_logits_and_match_live_runs(sweep_dir: Path) -> None:
    points = _points(sweep_dir)
    assert len(points) == 4
    assert points[(2.0, True)]["teacher_logits"] == "computed"
    assert points[(4.0, True)]["teacher_logits"] == "disk"  # the second T reads the first's file
    assert points[(2.0, False)]["teacher_logits"] is None  # a live teacher
    for T in (2.0, 4.0):
        cached, live = points[(T, True)]["student"], points[(T, False)]["student"]
        assert cached["top1"] == live["top1"] and cached["val_top1"] == live["val_top1"]


@pytest.mark.parametrize(
    ("mode", "augmenting", "cached"),
    [
        ("auto", False, True),
        ("auto", True, False),
        ("auto", "mix", False),
        ("true", True, True),
        ("false", False, False),
    ],
)
def test_cache_mode_follows_kd_cache_logits_and_augmentation(
    mode: str, augmenting: bool | str, cached: bool
) -> None:
    from types import SimpleNamespace

    from conftest import make_cfg

    from kdrun.train.phases import cache_logits

    mixing = augmenting == "mix"  # Mixup/CutMix: the batch the teacher sees is never a stored image
    data = SimpleNamespace(augment=object() if augmenting is True else None, mix=object() if mixing else None)
    assert cache_logits(make_cfg(f"kd.cache_logits={mode}"), data) is cached


def test_bad_cache_mode_is_refused() -> None:
    from conftest import make_cfg

    from kdrun.errors import KdrunConfigError
    from kdrun.train.validate import validate

    with pytest.raises(KdrunConfigError, match=r"kd.cache_logits='sometimes': allowed: auto, true, false"):
        validate(make_cfg("kd.cache_logits=sometimes"))
