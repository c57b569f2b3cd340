"""Shared fixtures: composed configs (Compose API) and a small in-memory data module."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from kdrun.config.roles import hydra_overrides
from kdrun.data import TensorDataModule

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share the cores: one thread each, inherited by the kdrun processes they start
    # (torch's spinning threads make an oversubscribed machine several times slower).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
KDRUN = [sys.executable, "-m", "kdrun"]
# What every distillation run logs (README, issue "core runner").
LOGGED = {"train/loss", "train/loss_soft", "train/loss_hard", "train/acc", "val/acc", "val/loss"}


def make_cfg(*overrides: str, config_name: str = "train") -> DictConfig:
    """The root config as `kdrun train <overrides>` composes it (or another command's config)."""
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        return compose(config_name=config_name, overrides=hydra_overrides(overrides))


@pytest.fixture
def cfg_factory():
    return make_cfg


def run_kdrun(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real `kdrun` command line in ``cwd`` (outputs land under ``cwd/outputs``)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*KDRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder (``paths.cache_dir``) for the whole session: the teachers and scratch
    students that many runs train the same way (the smoke run's cnn teacher and mlp baseline) are
    trained once. A test that checks training versus reuse keeps a cache of its own.

    Under pytest-xdist the workers share one folder: the cache's own lock lets one worker build an
    entry while the others wait and then read it (as parallel jobs do)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "shared_cache"
        folder.mkdir(exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("shared_cache")


@pytest.fixture
def tiny_data() -> TensorDataModule:
    """40 random 1x8x8 images over 4 classes: enough for a step, fast everywhere."""
    gen = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 1, 8, 8, generator=gen), torch.arange(n) % 4

    return TensorDataModule(
        split(40), split(12), split(12), classes=list("abcd"), batch_size=8, fingerprint="tiny"
    )
