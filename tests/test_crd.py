"""strategy=crd: the contrastive term against a hand computation, the negatives, the memory banks,
a tiny in-process fit, the penultimate features of the zoo, and its config checks."""

import math

import pytest
import torch
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.models.factory import create_model
from kdrun.models.taps import forward_with_penultimate
from kdrun.strategies import STRATEGIES
from kdrun.strategies.crd import CRD
from kdrun.train.validate import validate
from kdrun.training.fit import fit
from tests.conftest import make_cfg


def _net(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 4))


def _crd(n: int = 40, nce_k: int = 6, **kw) -> tuple[CRD, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x, labels = torch.randn(n, 1, 8, 8), torch.arange(n) % 4
    options = dict(
        T=4.0, feat_dim=5, nce_k=nce_k, nce_t=0.07, nce_m=0.5, beta=0.8, ce_weight=1.0, kd_weight=0.0
    )
    return CRD(_net(16), _net(12), labels, x[:2], **{**options, **kw}), x, labels


def _nce(scores: list[list[float]], n: int) -> float:
    """RepDistiller's ContrastLoss, written out: -[log D(pos) + sum log(1 - D(neg))] / B."""
    total = 0.0
    for row in scores:
        k = len(row) - 1
        noise = k / n
        total += math.log(row[0] / (row[0] + noise + 1e-7))
        total += sum(math.log(noise / (s + noise + 1e-7)) for s in row[1:])
    return -total / len(scores)


def test_crd_term_matches_a_hand_computation_of_the_reference():
    strategy, x, labels = _crd()
    memory = strategy.memory
    index = torch.tensor([3, 17, 22])
    sample = memory.sample(index)
    memory.sample = lambda _index: sample  # the same draw for the hand computation
    banks = memory.student_bank.clone(), memory.teacher_bank.clone()
    _, terms = strategy.loss_terms(x[index], labels[index], index)

    with torch.no_grad():
        _, f_s = forward_with_penultimate(strategy.student, x[index])
        _, f_t = forward_with_penultimate(strategy.teacher, x[index])
        v_s, v_t = strategy.embed_student(f_s), strategy.embed_teacher(f_t)
    n, expected = len(labels), 0.0
    # Student side: its embedding against the teacher's bank rows (the gathered (B, K+1, D) block
    # of the reference); teacher side the other way round. Z = N x the first batch's mean score.
    for v, bank in ((v_s, banks[1]), (v_t, banks[0])):
        raw = [
            [math.exp(float(bank[j] @ v[b]) / 0.07) for j in sample[b].tolist()] for b in range(len(index))
        ]
        z = sum(map(sum, raw)) / sum(map(len, raw)) * n
        expected += _nce([[s / z for s in row] for row in raw], n)
    assert terms["crd"].item() == pytest.approx(expected, rel=1e-4)
    assert set(terms) == {"hard", "soft", "crd"}
    assert strategy.weights == {"hard": 1.0, "soft": 0.0, "crd": 0.8}


def test_negatives_are_samples_of_other_classes_and_the_positive_comes_first():
    strategy, _, labels = _crd(nce_k=500)
    index = torch.tensor([0, 1, 2, 7, 39])
    sample = strategy.memory.sample(index)
    assert sample.shape == (5, 501)
    assert torch.equal(sample[:, 0], index)
    assert (labels[sample[:, 1:]] != labels[index].unsqueeze(1)).all()
    # Every other-class sample can be drawn (500 draws over 30 candidates each).
    assert len(torch.unique(sample[0, 1:])) == 30


def test_banks_move_with_momentum_and_z_is_set_once():
    strategy, x, labels = _crd()
    memory = strategy.memory
    before = memory.student_bank.clone()
    index = torch.tensor([4, 9])
    strategy.loss_terms(x[index], labels[index], index)
    z = memory.z.clone()
    assert (z > 0).all()
    with torch.no_grad():
        _, f_s = forward_with_penultimate(strategy.student, x[index])
        v_s = strategy.embed_student(f_s)
    expected = torch.nn.functional.normalize(0.5 * before[index] + 0.5 * v_s, dim=1)
    assert torch.allclose(memory.student_bank[index], expected, atol=1e-6)
    others = torch.ones(len(labels), dtype=torch.bool)
    others[index] = False
    assert torch.equal(memory.student_bank[others], before[others])
    strategy.loss_terms(x[:4], labels[:4], torch.arange(4))
    assert torch.equal(memory.z, z)


def test_a_tiny_fit_trains_the_student_and_both_heads_and_leaves_the_teacher(tiny_data, tmp_path):
    torch.manual_seed(0)
    x, y = tiny_data.splits["train"]
    strategy = CRD(
        _net(16), _net(12), y, x[:2], T=4.0, feat_dim=8, nce_k=12, nce_t=0.07, nce_m=0.5,
        beta=0.8, ce_weight=1.0, kd_weight=1.0,
    )  # fmt: skip
    start = {k: v.clone() for k, v in strategy.state_dict().items()}
    metrics = fit(
        strategy, tiny_data, make_cfg("recalibrate_bn=false"), epochs=1, seed=0, log_dir=tmp_path, label="t"
    )
    assert 0 <= metrics["train/acc"] <= 1
    after = strategy.state_dict()
    for moved in ("student.1.weight", "embed_student.linear.weight", "embed_teacher.linear.weight"):
        assert not torch.equal(after[moved], start[moved]), moved
    for key in (k for k in start if k.startswith("teacher.")):
        assert torch.equal(after[key], start[key]), key
    assert not torch.equal(after["memory.teacher_bank"], start["memory.teacher_bank"])
    assert not strategy.teacher.training


@pytest.mark.parametrize(("name", "dim"), [("resnet8x4", 256), ("wrn_16_2", 128), ("vgg8", 512)])
def test_penultimate_features_of_the_zoo_are_the_classifiers_input(name, dim):
    model = create_model({"name": name, "variant": None, "args": {}}, 100, (3, 32, 32)).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, features = forward_with_penultimate(model, x)
    assert features.shape == (2, dim) and logits.shape == (2, 100)
    assert torch.allclose(logits, model(x))  # the hook is gone and changed nothing
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_crd_composes_and_validates_with_repdistillers_defaults():
    cfg = make_cfg("strategy=crd")
    validate(cfg)
    s = cfg.strategy
    assert (s.feat_dim, s.nce_k, s.nce_t, s.nce_m, s.beta, s.ce_weight, s.kd_weight) == (
        128, 16384, 0.07, 0.5, 0.8, 1.0, 0.0
    )  # fmt: skip
    assert STRATEGIES["crd"] is CRD


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["strategy.nce_t=0"], "strategy.nce_t"),
        (["strategy.nce_k=0"], "strategy.nce_k"),
        (["strategy.feat_dim=1.5"], "strategy.feat_dim"),
        (["strategy.nce_m=1.5"], "strategy.nce_m"),
        (["strategy.beta=-1"], "strategy.beta"),
        (["+strategy.nce_q=1"], "strategy.nce_q"),
        (["trainer.devices=2"], "trainer.devices"),
        (["trainer.devices=auto"], "trainer.devices"),
        (["teacher=ensemble"], "teacher"),
        (["kd.cache_logits=views"], "kd.cache_logits"),  # its steps need the teacher's features
    ],
)
def test_bad_crd_values_name_their_key(overrides, key):
    with pytest.raises(KdrunConfigError, match=rf"^{key}="):
        validate(make_cfg("strategy=crd", *overrides))


def test_the_epoch_checkpoint_carries_the_banks_and_z(tiny_data, tmp_path):
    x, y = tiny_data.splits["train"]
    torch.manual_seed(0)
    strategy = CRD(
        _net(16), _net(12), y, x[:2], T=4.0, feat_dim=8, nce_k=12, nce_t=0.07, nce_m=0.5,
        beta=0.8, ce_weight=1.0, kd_weight=0.0,
    )  # fmt: skip
    initial = strategy.memory.student_bank.clone()
    cfg, folder = make_cfg("recalibrate_bn=false"), tmp_path / "ck"
    fit(strategy, tiny_data, cfg, epochs=1, seed=0, log_dir=tmp_path, label="t", checkpoint_dir=folder)
    saved = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for key in ("student_bank", "teacher_bank", "z"):  # a resumed fit continues with them
        assert torch.equal(saved[f"strategy.memory.{key}"], getattr(strategy.memory, key)), key
    assert not torch.equal(saved["strategy.memory.student_bank"], initial)
    assert "strategy.memory.labels" not in saved  # rebuilt from the data, not stored
