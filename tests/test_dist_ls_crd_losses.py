"""DIST, logit standardisation and CRD's NCE loss against hand-computed values."""

import math

import pytest
import torch

from kdrun.losses import contrast_nce_loss, dist_terms, kd_loss, standardize


def _softmax(row: list[float], T: float) -> list[float]:
    exps = [math.exp(v / T) for v in row]
    return [e / sum(exps) for e in exps]


def _pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def test_dist_terms_match_a_hand_computed_example():
    student = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    teacher = [[3.0, 0.0, 1.0], [0.5, 0.2, 2.0]]
    T = 2.0
    ps = [_softmax(r, T) for r in student]
    pt = [_softmax(r, T) for r in teacher]
    inter = 1 - sum(_pearson(a, b) for a, b in zip(ps, pt, strict=True)) / 2
    columns = [([r[c] for r in ps], [r[c] for r in pt]) for c in range(3)]
    intra = 1 - sum(_pearson(a, b) for a, b in columns) / 3
    got_inter, got_intra = dist_terms(torch.tensor(student), torch.tensor(teacher), T)
    assert got_inter.item() == pytest.approx(inter * T * T, rel=1e-5)
    assert got_intra.item() == pytest.approx(intra * T * T, rel=1e-5)
    assert inter != pytest.approx(intra)  # the two directions differ: a swap would fail


def test_dist_is_zero_when_the_student_matches_the_teacher():
    teacher = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    inter, intra = dist_terms(teacher, teacher, 4.0)
    assert inter.item() == pytest.approx(0.0, abs=1e-4) and intra.item() == pytest.approx(0.0, abs=1e-4)


def test_standardize_is_the_z_score_with_the_unbiased_std():
    row = [1.0, 2.0, 4.0, 9.0]
    mean = sum(row) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in row) / 3)
    got = standardize(torch.tensor([row]))[0].tolist()
    assert got == pytest.approx([(v - mean) / (1e-7 + std) for v in row], rel=1e-5)


def test_standardized_kd_ignores_the_students_logit_scale_and_shift():
    gen = torch.Generator().manual_seed(1)
    teacher, student = torch.randn(4, 10, generator=gen), torch.randn(4, 10, generator=gen)
    plain = kd_loss(student, teacher, 2.0)
    assert kd_loss(3 * student + 5, teacher, 2.0) != pytest.approx(plain.item())
    same = kd_loss(standardize(3 * student + 5), standardize(teacher), 2.0)
    assert same.item() == pytest.approx(
        kd_loss(standardize(student), standardize(teacher), 2.0).item(), rel=1e-5
    )


def test_contrast_nce_loss_matches_a_hand_computed_example():
    scores = [[0.5, 0.01, 0.02], [0.2, 0.05, 0.001]]
    n_data, eps = 100, 1e-7
    noise = 2 / n_data
    expected = 0.0
    for row in scores:
        expected -= math.log(row[0] / (row[0] + noise + eps))
        expected -= sum(math.log(noise / (x + noise + eps)) for x in row[1:])
    got = contrast_nce_loss(torch.tensor(scores, dtype=torch.float64), n_data)
    assert got.item() == pytest.approx(expected / 2, rel=1e-9)
