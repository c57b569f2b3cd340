"""The KD loss against hand-computed values, and how alpha mixes the soft and hard terms."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdrun.losses import kd_loss, soft_targets
from kdrun.strategies import STRATEGIES


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def _softmax(z: list[float], T: float) -> list[float]:
    e = [math.exp(v / T) for v in z]
    return [v / sum(e) for v in e]


def test_kd_loss_matches_hand_computed_value():
    student, teacher, T = [1.0, 2.0, 0.5], [3.0, 0.0, 1.0], 2.0
    expected = T * T * _kl(_softmax(teacher, T), _softmax(student, T))
    got = kd_loss(torch.tensor([student]), torch.tensor([teacher]), T)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_batch_mean_not_element_mean():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    t = torch.tensor([[3.0, 0.0, 1.0], [1.0, -1.0, 0.0]])
    per_row = [kd_loss(s[i : i + 1], t[i : i + 1], 3.0).item() for i in range(2)]
    assert kd_loss(s, t, 3.0).item() == pytest.approx(sum(per_row) / 2, rel=1e-6)


def test_kd_loss_scales_with_t_squared():
    s, t = torch.tensor([[0.2, -0.4, 1.0]]), torch.tensor([[0.1, 0.3, -0.2]])
    for T in (1.0, 4.0):
        kl = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean")
        assert kd_loss(s, t, T).item() == pytest.approx(T * T * kl.item(), rel=1e-6)


def test_kd_loss_is_zero_when_student_matches_teacher():
    z = torch.randn(4, 10)
    assert kd_loss(z, z.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_targets_flatten_with_temperature():
    z = torch.tensor([[5.0, 1.0, 0.0]])
    assert soft_targets(z, 1.0).max() > soft_targets(z, 4.0).max() > soft_targets(z, 20.0).max()


def _total_loss(alpha: float, T: float = 3.0) -> tuple[float, float, float]:
    torch.manual_seed(0)
    student, teacher = nn.Linear(5, 4), nn.Linear(5, 4)
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 0, 1])
    strategy = STRATEGIES["vanilla"](student, teacher, T=T, alpha=alpha)
    logits, terms = strategy.loss_terms(x, y, torch.arange(6))
    total = sum(w * terms[k] for k, w in strategy.weights.items())
    with torch.no_grad():
        ce = F.cross_entropy(student(x), y).item()
        soft = kd_loss(student(x), teacher(x), T).item()
    return total.item(), ce, soft


def test_alpha_zero_is_plain_cross_entropy():
    total, ce, _ = _total_loss(alpha=0.0)
    assert total == pytest.approx(ce, rel=1e-6)


def test_alpha_one_is_soft_term_only():
    total, _, soft = _total_loss(alpha=1.0)
    assert total == pytest.approx(soft, rel=1e-6)


def test_alpha_weighs_the_soft_term():
    total, ce, soft = _total_loss(alpha=0.3)
    assert total == pytest.approx(0.3 * soft + 0.7 * ce, rel=1e-6)
