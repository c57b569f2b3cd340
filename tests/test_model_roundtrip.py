"""Every model `kdrun models` lists trains as teacher and as student, is written to the cache, and
comes back from it (a second run's cache hit, a ``teacher.checkpoint``, ``kdrun export``) with
bit-identical logits: the trained model and every reload agree on a fixed batch."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import make_cfg
from safetensors.torch import load_file
from torch import nn

from kdrun.cache import Cache
from kdrun.config.roles import model_configs
from kdrun.data import TensorDataModule
from kdrun.models.asset import Asset
from kdrun.models.factory import ALIASES, MODELS
from kdrun.models.sections import role_base
from kdrun.train import phases as phases_module
from kdrun.train.phases import WEIGHTS, Phases

NOT_A_MODEL = {"ensemble"}  # members of another config: each loads through the teacher path
# Slow on a CPU (a one-step fit takes seconds): one test, run by `make test-slow`.
SLOW = {"resnet110", "resnet32x4", "vgg11", "vgg13", "vgg16", "vgg19"}
SLOW |= {"efficientnet_b0", "resnet18", "resnet34", "resnet50"}
SECTION = {"timm": {"name": "test_efficientnet"}}  # timm through one small model
# (config of model/, overrides of its section): every config; an alias's other variants slow.
FAST = [(c, SECTION.get(c, {})) for c in model_configs() if c not in SLOW | NOT_A_MODEL]
SLOW_CASES = [*[(c, {}) for c in sorted(SLOW)], ("mobilenet_v3", {"variant": "large"})]


@pytest.fixture(scope="module")
def images() -> TensorDataModule:
    """Two 3x32x32 images per split, batch 2: one training step, the smallest input of the zoo."""
    gen = torch.Generator().manual_seed(0)

    def split() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(2, 3, 32, 32, generator=gen), torch.tensor([0, 1])

    return TensorDataModule(split(), split(), split(), classes=["a", "b"], batch_size=2, fingerprint="two")


def _logits(model: nn.Module) -> torch.Tensor:
    """The model's eval-mode logits on one fixed batch (its train/eval flag is kept)."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    was_training = model.training
    with torch.no_grad():
        out = model.eval()(x)
    model.train(was_training)
    return out


@pytest.fixture
def saved_logits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[torch.Tensor]]:
    """The logits of every model the phases save, taken just before it is written."""
    saved, save = [], phases_module.save_weights

    def spy(model: nn.Module, path: Path) -> None:
        saved.append(_logits(model))
        save(model, path)

    monkeypatch.setattr(phases_module, "save_weights", spy)
    yield saved


def _round_trip(config: str, section: dict, data: TensorDataModule, cache: Path, saved: list) -> None:
    """As teacher (teacher entry) and as student (scratch baseline entry): the first run trains
    and caches, the second reads the entry back; the teacher entry loads as ``teacher.checkpoint``."""
    keys = {role: [f"{role}.{k}={v}" for k, v in section.items()] for role in ("teacher", "student")}
    cfg = make_cfg(
        f"teacher={config}", f"student={config}", "debug=smoke", *keys["teacher"], *keys["student"]
    )
    for role in ("teacher", "student"):

        def load(role: str = role) -> Asset:
            phases = Phases(cfg, data, Cache(cache))
            return phases.teacher() if role == "teacher" else phases.scratch(cfg.student, cfg.seed)

        saved.clear()
        first, second = load(), load()
        assert (first.source, second.source, len(saved)) == ("trained", "cache", 1), (config, role)
        assert torch.equal(_logits(first.model), saved[0]), (config, role)
        assert torch.equal(_logits(second.model), saved[0]), (config, role)
        if role == "teacher":
            weights, logits = Path(first.path) / WEIGHTS, saved[0]
    checkpoint = cfg.copy()
    checkpoint.teacher.checkpoint = str(weights)
    from_file = Phases(checkpoint, data, Cache(cache)).teacher()
    assert from_file.source == "checkpoint" and torch.equal(_logits(from_file.model), logits), config


def test_every_listed_model_has_a_round_trip() -> None:
    """Every config of model/ (the torchvision ones included), every built-in and CIFAR zoo model
    and every variant of an alias is a case."""
    covered = FAST + SLOW_CASES
    assert {config for config, _ in covered} == set(model_configs()) - NOT_A_MODEL
    names = {section.get("name") or role_base("student", config).name for config, section in covered}
    assert set(MODELS) <= names  # mlp, cnn and the CIFAR zoo
    for alias, (_, default, allowed) in ALIASES.items():
        assert {s.get("variant", default) for c, s in covered if c == alias} == set(allowed)


@pytest.mark.parametrize(("config", "section"), FAST, ids=[c for c, _ in FAST])
def test_model_trains_caches_and_reloads_bit_identically(config, section, images, tmp_path, saved_logits):
    if config == "timm":
        pytest.importorskip("timm")
    _round_trip(config, section, images, tmp_path, saved_logits)


@pytest.mark.slow
def test_slow_models_train_cache_and_reload_bit_identically(images, tmp_path, saved_logits):
    for config, section in SLOW_CASES:
        _round_trip(config, section, images, tmp_path / config, saved_logits)


def test_a_wrn_pair_runs_end_to_end_and_its_student_file_exports(tmp_path):
    """``kdrun train teacher=wrn_16_1 student=wrn_16_1`` in this process, then the student file
    as ``kdrun export`` reads it back: the run's recorded top-1 is recomputed from it."""
    from kdrun import train
    from kdrun.export.command import load_run

    results = train(
        [
            "debug=smoke",
            "teacher=wrn_16_1",
            "student=wrn_16_1",
            "dataset.limit=64",  # the pipeline, not the accuracy: one step per phase
            "dataset.split.val=32",
            "dataset.split.test=32",
            "measure.batch_sizes=[1]",
            f"paths.output_root={tmp_path}",
        ],
        run_dir=tmp_path / "run",
    )
    assert results["status"] == "ok"
    _, _, student, _ = load_run(tmp_path / "run")  # raises unless its top-1 is the recorded one
    stored = load_file(str(tmp_path / "run" / "student.safetensors"))
    assert stored.keys() == student.state_dict().keys()
    assert all(torch.equal(stored[k], v) for k, v in student.state_dict().items())
