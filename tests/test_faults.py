"""Results a user can trust under faults and shared files: signals, concurrent runs, cache
integrity, hostile configs, report grouping, export checks, full or read-only disks."""

from datetime import datetime

import hydra.core.utils
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf


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
