"""Typed config sections: one KdrunConfigError line for an unknown key, a wrong type, a bound."""

from dataclasses import dataclass
from typing import Any

import pytest
from omegaconf import OmegaConf

from kdrun.config.schema import MISSING, check, choice, number
from kdrun.errors import KdrunConfigError
from kdrun.strategies import STRATEGIES
from tests.conftest import make_cfg


@dataclass
class Section:
    rate: float = number(MISSING, gt=0, le=1)
    count: int = number(MISSING, ge=1, integer=True)
    limit: Any = number(MISSING, ge=1, integer=True, optional=True)
    mode: Any = choice(MISSING, "auto", True, False)
    note: str = MISSING


GOOD = {"rate": 0.5, "count": 2, "limit": None, "mode": "auto", "note": "x"}
CASES = [
    ({"rate": 0}, "sec.rate=0: must be a number > 0 and <= 1"),
    ({"rate": "fast"}, "sec.rate='fast': must be a number > 0 and <= 1"),
    ({"count": 2.5}, "sec.count=2.5: must be an integer >= 1"),
    ({"count": True}, "sec.count=True: must be an integer >= 1"),
    ({"limit": 0}, "sec.limit=0: must be an integer >= 1"),
    ({"mode": "sometimes"}, "sec.mode='sometimes': allowed: auto, true, false"),
    ({"extra": 1}, "sec.extra=1: allowed keys: rate, count, limit, mode, note"),
]


def test_a_good_section_passes_and_null_is_allowed_where_optional():
    check(OmegaConf.create(GOOD), Section, "sec")
    check(OmegaConf.create({**GOOD, "limit": 3, "mode": False}), Section, "sec")


@pytest.mark.parametrize(("change", "line"), CASES, ids=[str(c) for c, _ in CASES])
def test_each_violation_is_one_line_naming_key_value_and_rule(change, line):
    with pytest.raises(KdrunConfigError) as info:
        check(OmegaConf.create({**GOOD, **change}), Section, "sec")
    assert str(info.value) == line


def test_every_strategy_yaml_matches_its_schema():
    for name, strategy in STRATEGIES.items():
        cfg = make_cfg(f"strategy={name}")
        check(cfg.strategy, strategy.options, "strategy")
        assert set(cfg.strategy) == {f for f in strategy.options.__dataclass_fields__}, name
