"""teacher=ensemble (k members, mean of probabilities) and strategy=hydra_heads (one head per member)."""

import json

import pytest
import torch
import torch.nn.functional as F

import kdrun.train.pipeline as run_module
from kdrun.errors import KdrunConfigError
from kdrun.models import create_model
from kdrun.models.ensemble import TeacherEnsemble
from kdrun.strategies.hydra_heads import HydraStudent, disagreement, make_head, split_classifier
from tests.conftest import make_cfg

SPEC = {"variant": None, "pretrained": False, "bn_momentum": None, "channels_last": False}


@pytest.mark.parametrize(
    ("name", "args"), [("mlp", {"hidden": [16]}), ("cnn", {"channels": [4], "hidden": 8}), ("resnet18", {})]
)
def test_split_classifier_keeps_the_function_of_the_model(name, args):
    torch.manual_seed(0)
    model = create_model({"name": name, "args": args, **SPEC}, 10, (3, 32, 32)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        body, classifier = split_classifier(model)
        assert torch.allclose(classifier(body(x)), before, atol=1e-5)
    assert classifier.out_features == 10


def test_heads_are_fresh_and_shaped_like_the_classifier():
    classifier = torch.nn.Linear(6, 3)
    head = make_head(classifier, [])
    assert head.weight.shape == classifier.weight.shape and not torch.equal(head.weight, classifier.weight)
    deep = make_head(classifier, [5])
    assert deep(torch.randn(2, 6)).shape == (2, 3) and len(deep) == 3


def test_hydra_predicts_with_the_mean_of_its_heads_probabilities():
    torch.manual_seed(0)
    heads = [torch.nn.Linear(4, 3) for _ in range(3)]
    student = HydraStudent(torch.nn.Identity(), heads)
    x = torch.randn(5, 4)
    expected = torch.stack([F.softmax(h(x), dim=-1) for h in heads]).mean(0)
    assert torch.allclose(student(x).exp(), expected, atol=1e-6)


def test_disagreement_by_hand():
    # three models on four inputs; labels 0,0,1,1 / 0,1,1,1 / 2,2,2,2 -> pairs differ on 1/4, 4/4, 4/4
    labels = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 2, 2]])
    logits = F.one_hot(labels, 3).float()
    assert disagreement(logits) == pytest.approx((0.25 + 1 + 1) / 3)


def test_the_ensemble_predicts_with_the_mean_of_probabilities_at_T_1():
    members = [torch.nn.Linear(4, 3) for _ in range(2)]
    ensemble = TeacherEnsemble(members, T=4.0).at_temperature(1.0)
    x = torch.randn(3, 4)
    expected = (F.softmax(members[0](x), -1) + F.softmax(members[1](x), -1)) / 2
    assert torch.allclose(F.softmax(ensemble(x), -1), expected, atol=1e-5)


def _run(tmp_path, *overrides, teacher=("teacher=ensemble", "teacher.members=2")):
    cfg = make_cfg("debug=smoke", f"paths.output_root={tmp_path}", *teacher, *overrides)
    return run_module.train(cfg, tmp_path / "run")


def test_vanilla_distils_the_ensemble_and_reports_each_member(tmp_path):
    small = "dataset.limit=128"  # training, caching and loading the members, not their accuracy
    results = _run(tmp_path, small)
    assert results["teacher"]["name"] == "ensemble(2xcnn)" and results["teacher"]["source"] == "ensemble"
    members = results["extra_models"]
    assert [members[r]["source"] for r in ("teacher_1", "teacher_2")] == ["trained", "trained"]
    assert results["teacher"]["params"] == 2 * members["teacher_1"]["params"]
    again = run_module.train(
        make_cfg(
            "debug=smoke", small, f"paths.output_root={tmp_path}", "teacher=ensemble", "teacher.members=2"
        ),
        tmp_path / "run2",
    )
    assert [again["extra_models"][r]["source"] for r in ("teacher_1", "teacher_2")] == ["cache", "cache"]
    weights = sorted(str(p) for p in (tmp_path / "cache/teacher").glob("cnn-*/model.safetensors"))
    loaded = run_module.train(
        make_cfg(
            "debug=smoke",
            small,
            f"paths.output_root={tmp_path}",
            "teacher=ensemble",
            f"teacher.checkpoints=[{weights[0]},{weights[1]}]",
        ),
        tmp_path / "run3",
    )
    assert loaded["extra_models"]["teacher_1"]["source"] == "checkpoint"


def test_hydra_heads_trains_one_head_per_member_and_reports_diversity(tmp_path, shared_cache):
    results = _run(tmp_path, "strategy=hydra_heads", f"paths.cache_dir={shared_cache}")
    assert results["student"]["name"] == "mlp+2heads" and results["strategy"]["heads"] == 2
    head = 128 * 10 + 10  # the mlp's classifier: Linear(128, 10)
    assert results["student"]["params"] == results["baseline"]["params"] + head
    diversity = results["diagnostics"]
    assert 0 <= diversity["disagreement_heads"] <= 1 and 0 <= diversity["disagreement_members"] <= 1
    assert results["student"]["top1"] > 0.2
    assert json.loads((tmp_path / "run/results.json").read_text())["diagnostics"] == diversity


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["teacher.members=1"], "teacher.members", ">= 2"),
        (["teacher.model=nope"], "teacher.model", "allowed: cnn"),
        (["teacher.model=ensemble"], "teacher.model", "single models"),
        (["teacher.checkpoints=[a.pt,b.pt]"], "teacher.checkpoints", "does not exist"),
        (["strategy=online"], "teacher", "single-model teacher"),
        (["strategy=hydra_heads"], "teacher", "needs teacher=ensemble"),
        (["strategy=hydra_heads", "strategy.head_hidden=[0]"], "strategy.head_hidden", "integers >= 1"),
    ],
)
def test_bad_ensemble_input_is_refused_before_training(tmp_path, overrides, key, message):
    single = key == "teacher" and "hydra_heads" in overrides[0]
    with pytest.raises(KdrunConfigError, match=message) as info:
        _run(tmp_path, *overrides, **({"teacher": ("teacher=cnn",)} if single else {}))
    assert info.value.key == key
    assert not (tmp_path / "cache").exists()
