"""Speed options are config keys that change how fast training runs, not what it computes."""

import math

import pytest
import torch
from torch import nn

from kdrun.strategies import STRATEGIES
from kdrun.training.fit import fit
from tests.conftest import make_cfg


def _strategy() -> nn.Module:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    return STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.9)


def test_bf16_autocast_trains_on_cpu(tiny_data, tmp_path) -> None:
    """`trainer.precision=bf16-mixed`: the step runs under CPU autocast and the loss stays finite."""
    strategy = _strategy()
    seen = []
    forward = strategy.student.forward
    strategy.student.forward = lambda x: seen.append(torch.get_autocast_dtype("cpu")) or forward(x)
    before = [p.clone() for p in strategy.student.parameters()]
    cfg = make_cfg("trainer.precision=bf16-mixed")
    metrics = fit(strategy, tiny_data, cfg, epochs=2, seed=0, log_dir=tmp_path, label="bf16")
    assert torch.bfloat16 in seen and torch.is_autocast_cpu_enabled() is False
    assert math.isfinite(metrics["train/loss"]) and 0 <= metrics["val/acc"] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, strategy.student.parameters(), strict=True))


@pytest.mark.slow
def test_compile_trains_then_leaves_an_eager_model_with_the_same_keys(tiny_data, tmp_path) -> None:
    """`compile=true` (torch.compile, about 20 s of compilation): same results, eager afterwards."""
    eager, compiled = _strategy(), _strategy()
    keys = list(compiled.student.state_dict())
    m_eager = fit(eager, tiny_data, make_cfg(), epochs=2, seed=0, log_dir=tmp_path / "e", label="eager")
    m_compiled = fit(
        compiled, tiny_data, make_cfg("compile=true"), epochs=2, seed=0, log_dir=tmp_path / "c", label="c"
    )
    assert compiled.student._compiled_call_impl is None  # evaluation, latency and export run eager
    assert list(compiled.student.state_dict()) == keys
    assert m_compiled["val/acc"] == pytest.approx(m_eager["val/acc"], abs=1e-6)
    for a, b in zip(eager.student.parameters(), compiled.student.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_bad_compile_value_is_refused() -> None:
    from kdrun.errors import KdrunConfigError
    from kdrun.train.validate import validate

    with pytest.raises(KdrunConfigError, match=r"^compile='yes': allowed: true, false"):
        validate(make_cfg("compile=yes"))
