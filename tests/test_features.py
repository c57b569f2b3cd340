"""Feature distillation: hints (FitNets) and attention transfer, layers chosen by name."""

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

import kdrun.train.pipeline as run_module
from kdrun.errors import KdrunConfigError
from kdrun.losses import attention_loss, attention_map, hint_loss
from kdrun.models.taps import check_layer, forward_with_features
from kdrun.strategies.hints import Hints
from tests.conftest import make_cfg


def test_hint_loss_is_the_mean_squared_error():
    s, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    assert hint_loss(s, t).item() == pytest.approx((1 + 4) / 2)


def test_attention_map_by_hand():
    # one sample, two channels, 1x2 map: mean over channels of a^2 = [(1+9)/2, (4+0)/2] = [5, 2]
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    norm = (25 + 4) ** 0.5
    assert attention_map(f)[0].tolist() == pytest.approx([5 / norm, 2 / norm])


def test_attention_loss_is_zero_for_proportional_maps_and_resizes_the_student():
    t = torch.rand(2, 3, 4, 4)
    assert attention_loss(2 * t, t).item() == pytest.approx(0, abs=1e-7)  # normalised: scale-free
    s = torch.rand(2, 5, 8, 8)
    assert attention_loss(s, t).item() > 0  # 8x8 student map resized to the teacher's 4x4


def test_hooks_capture_the_named_outputs_and_are_removed():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(5, 4)
    for _ in range(3):
        out, feats = forward_with_features(model, ["1"], x)
    assert torch.equal(feats["1"], torch.relu(model[0](x))) and out.shape == (5, 2)
    assert all(not m._forward_hooks for m in model.modules())  # nothing left attached


def test_an_unknown_layer_lists_the_closest_names():
    model = nn.Sequential(OrderedDict(body=nn.Linear(4, 3), head=nn.Linear(3, 2)))
    with pytest.raises(KdrunConfigError, match="not a layer of toy; closest: body"):
        check_layer(model, "bdy", "strategy.pairs[0].student", "toy")


def test_fitnets_two_stage_schedule_weights():
    student, teacher = nn.Linear(4, 2), nn.Linear(4, 2)
    hints = Hints(
        student,
        teacher,
        T=4.0,
        alpha=0.9,
        pairs=[("x", "y")],
        feat_weight=0.5,
        regressors=[nn.Linear(2, 2)],
        hint_epochs=2,
    )
    hints.on_train_epoch_start(1)
    assert hints.weights == {"soft": 0.0, "hard": 0.0, "feat": 1.0}
    hints.on_train_epoch_start(2)
    assert hints.weights == {"soft": 0.9, "hard": pytest.approx(0.1), "feat": 0.5}


@pytest.mark.parametrize("strategy", ["hints", "attention"])
def test_feature_strategies_run_end_to_end_and_ship_a_plain_student(tmp_path, shared_cache, strategy):
    cfg = make_cfg(
        "debug=smoke",
        "epochs=3",
        "alpha=0.5",
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={shared_cache}",
        f"strategy={strategy}",
        "student=cnn",
        *(["strategy.hint_epochs=0"] if strategy == "hints" else []),
    )
    results = run_module.train(cfg, tmp_path / "run")
    assert results["student"]["top1"] > 0.2
    assert results["student"]["params"] == results["baseline"]["params"]  # no regressor counted
    header = (tmp_path / "run/metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss_feat" in header
    from safetensors.torch import load_file

    assert not any("regressor" in k for k in load_file(str(tmp_path / "run/student.safetensors")))
    assert json.loads((tmp_path / "run/results.json").read_text())["strategy"]["pairs"]


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["strategy=attention"], "strategy.pairs", "no default layer pair for cnn->mlp"),
        (
            ["strategy=attention", "student=cnn", "strategy.pairs=[{teacher:feature.3,student:features.3}]"],
            "strategy.pairs[0].teacher",
            "closest: features.3",
        ),
        (
            ["strategy=attention", "strategy.pairs=[{teacher:head.2,student:net.1}]"],
            "strategy.pairs[0]",
            "4-D feature maps",
        ),
        (["strategy=hints", "strategy.hint_epochs=5"], "strategy.hint_epochs", "< student.epochs"),
        (["strategy=hints", "strategy.pairs=[{teacher:head.2}]"], "strategy.pairs", "non-empty list"),
    ],
)
def test_bad_feature_input_is_refused_before_training(tmp_path, overrides, key, message):
    cfg = make_cfg("debug=smoke", f"paths.output_root={tmp_path}", *overrides)
    with pytest.raises(KdrunConfigError, match=message) as info:
        run_module.train(cfg, tmp_path / "run")
    assert info.value.key == key and not (tmp_path / "cache").exists()


def test_layers_command_lists_names_and_shapes(capsys):
    from kdrun.cli import main

    main(["layers", "cnn", "--group", "teacher"])
    out = capsys.readouterr().out
    assert "features.7" in out and "(1, 64, 7, 7)" in out
