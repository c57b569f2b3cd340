"""The strategies' losses against hand-computed values and the identities their papers state."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdrun.losses import dkd_terms, kd_loss, mutual_loss
from kdrun.models.ensemble import TeacherEnsemble


def _softmax(row: list[float], T: float = 1.0) -> list[float]:
    exps = [math.exp(v / T) for v in row]
    return [e / sum(exps) for e in exps]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def test_dkd_terms_match_a_hand_computed_example():
    student, teacher, target, T = [1.0, 2.0, 0.5], [3.0, 0.0, 1.0], 0, 2.0
    ps, pt = _softmax(student, T), _softmax(teacher, T)
    tckd = _kl([pt[0], 1 - pt[0]], [ps[0], 1 - ps[0]]) * T * T
    nckd = _kl(_softmax(teacher[1:], T), _softmax(student[1:], T)) * T * T
    got = dkd_terms(torch.tensor([student]), torch.tensor([teacher]), torch.tensor([target]), T)
    assert got[0].item() == pytest.approx(tckd, rel=1e-5)
    assert got[1].item() == pytest.approx(nckd, rel=1e-5)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dkd_identity_kd_equals_tckd_plus_non_target_mass_times_nckd(T):
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(16, 10, generator=gen) * 3, torch.randn(16, 10, generator=gen) * 3
    target = torch.randint(0, 10, (16,), generator=gen)
    tckd, nckd = dkd_terms(student, teacher, target, T, reduction="none")
    kd = torch.stack([kd_loss(student[i : i + 1], teacher[i : i + 1], T) for i in range(16)])
    p_target = F.softmax(teacher / T, dim=-1).gather(1, target[:, None]).squeeze(1)
    assert torch.allclose(kd, tckd + (1 - p_target) * nckd, atol=1e-5)
    assert not torch.allclose(kd, tckd + nckd, atol=1e-3)  # the weighting matters: the test can fail


@pytest.mark.parametrize("margin", [20.0, 30.0])
def test_dkd_tckd_in_float32_matches_float64_when_the_target_is_far_ahead(margin):
    # 1 - p_target cancels in float32 at these margins (TCKD off by 0.06-10 %, its gradient by
    # 8-100 %); the log-space rest mass keeps both within float32 rounding.
    student = torch.zeros(4, 100)
    student[:, 0] = margin
    student[:, 1:] = torch.linspace(-1, 1, 99)
    teacher = torch.randn(4, 100, generator=torch.Generator().manual_seed(0))
    teacher[:, 0] += 5
    target = torch.zeros(4, dtype=torch.long)
    values, grads = {}, {}
    for dtype in (torch.float32, torch.float64):
        logits = student.to(dtype).clone().requires_grad_(True)
        tckd, _ = dkd_terms(logits, teacher.to(dtype), target, 1.0)
        tckd.backward()
        values[dtype], grads[dtype] = tckd.item(), logits.grad.double()
    assert values[torch.float32] == pytest.approx(values[torch.float64], rel=1e-6)
    grad_error = (grads[torch.float32] - grads[torch.float64]).norm() / grads[torch.float64].norm()
    assert grad_error < 1e-5


def test_mutual_loss_of_two_peers_is_the_two_kls():
    a, b = [2.0, 0.0, -1.0], [0.5, 0.5, 1.0]
    expected = _kl(_softmax(b), _softmax(a)) + _kl(_softmax(a), _softmax(b))
    assert mutual_loss([torch.tensor([a]), torch.tensor([b])]).item() == pytest.approx(expected, rel=1e-5)


def test_mutual_loss_pulls_each_peer_only_towards_the_others():
    a = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    b = torch.tensor([[0.5, 0.5, 1.0]], requires_grad=True)
    kd_loss(a, b.detach(), 1.0).backward()
    only_a = a.grad.clone()
    a.grad = None
    mutual_loss([a, b]).backward()
    assert torch.allclose(a.grad, only_a)  # b's own term adds no gradient to a


def test_mutual_loss_averages_over_the_other_peers():
    gen = torch.Generator().manual_seed(1)
    logits = [torch.randn(4, 5, generator=gen) for _ in range(3)]
    expected = sum(
        (kd_loss(logits[i], logits[j], 2.0) + kd_loss(logits[i], logits[k], 2.0)) / 2
        for i, j, k in ((0, 1, 2), (1, 0, 2), (2, 0, 1))
    )
    assert mutual_loss(logits, T=2.0).item() == pytest.approx(expected.item(), rel=1e-5)


class _Fixed(nn.Module):
    def __init__(self, logits: list[list[float]]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


A = [[4.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
B = [[0.0, 2.0, 0.0], [0.0, 0.0, 5.0]]


def test_mean_ensemble_softmax_at_T_is_the_mean_of_member_probabilities():
    T = 2.0
    out = TeacherEnsemble([_Fixed(A), _Fixed(B)], T=T)(torch.zeros(2, 1))
    for row in range(2):
        expected = [(p + q) / 2 for p, q in zip(_softmax(A[row], T), _softmax(B[row], T), strict=True)]
        assert F.softmax(out[row] / T, dim=-1).tolist() == pytest.approx(expected, rel=1e-5)


def test_fixed_and_confidence_weights():
    T = 1.0
    fixed = TeacherEnsemble([_Fixed(A), _Fixed(B)], T=T, weighting="fixed", weights=[3, 1])(torch.zeros(2, 1))
    expected = [0.75 * p + 0.25 * q for p, q in zip(_softmax(A[0]), _softmax(B[0]), strict=True)]
    assert F.softmax(fixed[0], dim=-1).tolist() == pytest.approx(expected, rel=1e-5)
    conf = TeacherEnsemble([_Fixed(A), _Fixed(B)], T=T, weighting="confidence")(torch.zeros(2, 1))
    pa, pb = _softmax(A[1]), _softmax(B[1])  # row 1: B is far more confident than A
    wa, wb = max(pa) / (max(pa) + max(pb)), max(pb) / (max(pa) + max(pb))
    expected = [wa * p + wb * q for p, q in zip(pa, pb, strict=True)]
    assert F.softmax(conf[1], dim=-1).tolist() == pytest.approx(expected, rel=1e-5)
    assert wb > 0.6
