"""DIST strategy, DKD's warm-up and the kd.standardize switch: their config keys and losses."""

import json

import pytest
import torch
from torch import nn

import kdrun.train.pipeline as run_module
from kdrun.errors import KdrunConfigError
from kdrun.losses import dist_terms, kd_loss, standardize
from kdrun.strategies import STRATEGIES
from kdrun.train.validate import validate
from tests.conftest import make_cfg


def _pair() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return (
        nn.Linear(6, 5),
        nn.Linear(6, 5).requires_grad_(False),
        torch.randn(8, 6),
        torch.randint(0, 5, (8,)),
    )


def test_dist_strategy_terms_and_weights():
    student, teacher, x, y = _pair()
    strategy = STRATEGIES["dist"](student, teacher, T=4.0, beta=2.0, gamma=3.0, ce_weight=1.0)
    _, terms = strategy.loss_terms(x, y, torch.arange(8))
    inter, intra = dist_terms(student(x), teacher(x), 4.0)
    assert torch.allclose(terms["inter"], inter) and torch.allclose(terms["intra"], intra)
    assert strategy.weights == {"hard": 1.0, "inter": 2.0, "intra": 3.0}


def test_dkd_warmup_ramps_both_kd_weights_over_the_first_epochs():
    student, teacher, _, _ = _pair()
    dkd = STRATEGIES["dkd"](
        student, teacher, T=4.0, tckd_weight=1.0, nckd_weight=8.0, ce_weight=1.0, warmup_epochs=20
    )
    seen = []
    for epoch in (0, 9, 19, 30):  # Lightning's epochs count from 0; mdistiller's from 1
        dkd.on_train_epoch_start(epoch)
        seen.append((dkd.weights["tckd"], dkd.weights["nckd"], dkd.weights["hard"]))
    assert seen == [(0.05, 0.4, 1.0), (0.5, 4.0, 1.0), (1.0, 8.0, 1.0), (1.0, 8.0, 1.0)]
    plain = STRATEGIES["dkd"](student, teacher, T=4.0, tckd_weight=1.0, nckd_weight=8.0, ce_weight=1.0)
    assert plain.weights == {"hard": 1.0, "tckd": 1.0, "nckd": 8.0}


@pytest.mark.parametrize("name", ["vanilla", "dkd", "dist"])
def test_standardize_z_scores_both_logits_of_the_soft_terms_only(name):
    student, teacher, x, y = _pair()
    args = {"vanilla": {"alpha": 0.9}, "dkd": {"tckd_weight": 1.0, "nckd_weight": 8.0, "ce_weight": 1.0}}
    args["dist"] = {"beta": 2.0, "gamma": 2.0, "ce_weight": 1.0}
    strategy = STRATEGIES[name](student, teacher, T=2.0, **args[name])
    _, plain = strategy.loss_terms(x, y, torch.arange(8))
    strategy.standardize = True
    _, standardized = strategy.loss_terms(x, y, torch.arange(8))
    assert torch.allclose(plain["hard"], standardized["hard"])
    soft = [k for k in plain if k != "hard"]
    assert all(not torch.allclose(plain[k], standardized[k]) for k in soft)
    if name == "vanilla":
        expected = kd_loss(standardize(student(x)), standardize(teacher(x)), 2.0)
        assert torch.allclose(standardized["soft"], expected)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["kd.standardize=yes"], "kd.standardize"),
        (["strategy=dkd", "strategy.warmup_epochs=-1"], "strategy.warmup_epochs"),
        (["strategy=dist", "strategy.gamma=-2"], "strategy.gamma"),
        (["optim=sgd", "optim.schedule=multistep", "optim.milestones=[]"], "optim.milestones"),
    ],
)
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(KdrunConfigError, match=rf"^{key}="):
        validate(make_cfg(*overrides))
    validate(make_cfg("strategy=dist", "kd.standardize=true"))  # the good ones compose and validate


@pytest.mark.slow  # three trainings on the embedded data
def test_dist_with_standardize_runs_end_to_end(tmp_path):
    cfg = make_cfg("debug=smoke", f"paths.output_root={tmp_path}", "strategy=dist", "kd.standardize=true")
    results = run_module.train(cfg, tmp_path / "run")
    assert results == json.loads((tmp_path / "run" / "results.json").read_text())
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_inter", "train/loss_intra", "train/loss_hard"} <= set(header)
    assert results["status"] == "ok" and results["strategy"]["weights"] == {
        "hard": 1.0,
        "inter": 2.0,
        "intra": 2.0,
    }
