"""The CIFAR model zoo: shapes, parameter counts of the reference architectures, reference
state-dict layouts (RepDistiller / mdistiller `.pth` checkpoints) loading."""

import pytest
import torch

from kdrun.errors import KdrunConfigError
from kdrun.models import create_model, load_weights
from kdrun.models.cifar import CIFAR_MODELS

# Parameters at 100 classes. Built from the reference definitions; the published figures (the
# CRD / DKD papers' tables, in millions, rounded or truncated) are checked separately below.
PARAMS = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg11": 9_277_284,
    "vgg13": 9_462_180,
    "vgg16": 14_774_436,
    "vgg19": 20_086_692,
    "MobileNetV2": 812_836,
    "ShuffleV1": 949_258,
    "ShuffleV2": 1_355_528,
}
PUBLISHED_M = {
    "resnet32x4": 7.43,
    "resnet8x4": 1.23,
    "wrn_40_2": 2.26,
    "wrn_16_2": 0.70,
    "resnet56": 0.86,
    "resnet20": 0.28,
    "vgg13": 9.46,
    "vgg8": 3.96,
}


def _spec(name: str) -> dict:
    return {"name": name, "variant": None, "args": {}, "pretrained": False, "bn_momentum": None}


def test_the_zoo_is_the_reference_list():
    assert set(CIFAR_MODELS) == set(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_zoo_model_shapes_and_parameter_count(name):
    with torch.device("meta"):  # shapes and counts without the arithmetic: the suite stays fast
        model = create_model(_spec(name), 100, (3, 32, 32)).eval()
        assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
        assert model(torch.empty(2, 3, 32, 32)).shape == (2, 100)
        grey = create_model(_spec(name), 10, (1, 28, 28)).eval()  # MNIST: 1 channel in, 28 px
        assert grey(torch.empty(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(PUBLISHED_M))
def test_parameter_count_matches_the_published_figure(name):
    assert abs(PARAMS[name] / 1e6 - PUBLISHED_M[name]) < 0.006


# Keys (and shapes) as the reference definitions name them: a state dict saved by RepDistiller or
# mdistiller has exactly these entries among its others.
REFERENCE_KEYS = {
    "resnet8x4": {
        "conv1.weight": (32, 3, 3, 3),
        "layer1.0.downsample.0.weight": (64, 32, 1, 1),
        "layer1.0.downsample.1.running_var": (64,),
        "layer3.0.conv2.weight": (256, 256, 3, 3),
        "fc.weight": (100, 256),
    },
    "resnet20": {"layer1.2.bn2.num_batches_tracked": (), "layer2.0.downsample.0.weight": (32, 16, 1, 1)},
    # The published teachers (ckpt_epoch_240.pth of RepDistiller / mdistiller).
    "resnet32x4": {
        "conv1.weight": (32, 3, 3, 3),
        "layer1.0.downsample.0.weight": (64, 32, 1, 1),
        "layer1.4.conv2.weight": (64, 64, 3, 3),
        "layer3.4.conv2.weight": (256, 256, 3, 3),
        "fc.weight": (100, 256),
    },
    "resnet56": {
        "conv1.weight": (16, 3, 3, 3),
        "layer2.0.downsample.0.weight": (32, 16, 1, 1),
        "layer3.8.conv2.weight": (64, 64, 3, 3),
        "fc.weight": (100, 64),
    },
    "wrn_40_2": {
        "block1.layer.0.convShortcut.weight": (32, 16, 1, 1),
        "block3.layer.5.conv2.weight": (128, 128, 3, 3),
        "bn1.weight": (128,),
        "fc.weight": (100, 128),
    },
    "wrn_16_2": {
        "block1.layer.0.convShortcut.weight": (32, 16, 1, 1),
        "block1.layer.1.bn1.weight": (32,),
        "block3.layer.0.conv1.weight": (128, 64, 3, 3),
        "bn1.running_mean": (128,),
        "fc.bias": (100,),
    },
    "vgg8": {
        "block0.0.weight": (64, 3, 3, 3),
        "block0.0.bias": (64,),
        "block0.1.running_mean": (64,),
        "block4.1.weight": (512,),
        "classifier.weight": (100, 512),
    },
    "vgg13": {"block1.3.weight": (128, 128, 3, 3), "block1.4.running_var": (128,)},
    "MobileNetV2": {
        "conv1.0.weight": (16, 3, 3, 3),
        "blocks.0.0.conv.3.weight": (16, 1, 3, 3),
        "blocks.1.0.conv.0.weight": (48, 8, 1, 1),
        "blocks.6.0.conv.7.bias": (160,),
        "conv2.0.weight": (1280, 160, 1, 1),
        "classifier.0.weight": (100, 1280),
    },
    "ShuffleV1": {
        "conv1.weight": (24, 3, 1, 1),
        "layer1.0.conv1.weight": (54, 24, 1, 1),
        "layer1.0.conv3.weight": (216, 18, 1, 1),
        "layer2.1.conv1.weight": (120, 160, 1, 1),
        "linear.weight": (100, 960),
    },
    "ShuffleV2": {
        "layer1.0.conv1.weight": (24, 1, 3, 3),
        "layer1.0.conv5.weight": (58, 58, 1, 1),
        "layer1.1.conv1.weight": (58, 58, 1, 1),
        "conv2.weight": (1024, 464, 1, 1),
        "bn2.weight": (1024,),
        "linear.weight": (100, 1024),
    },
}


@pytest.mark.parametrize("name", sorted(REFERENCE_KEYS))
def test_state_dict_has_the_reference_keys_and_shapes(name):
    with torch.device("meta"):
        state = create_model(_spec(name), 100, (3, 32, 32)).state_dict()
    assert {k: tuple(state[k].shape) for k in REFERENCE_KEYS[name] if k in state} == REFERENCE_KEYS[name]


# Blocks per stage: the last one exists and there is no further one (a deeper or shallower model
# than the reference would load neither way).
DEPTH = {
    "resnet32x4": ("layer3.4.conv1.weight", "layer3.5.conv1.weight"),
    "resnet56": ("layer3.8.conv1.weight", "layer3.9.conv1.weight"),
    "resnet110": ("layer3.17.conv1.weight", "layer3.18.conv1.weight"),
    "wrn_40_2": ("block3.layer.5.conv1.weight", "block3.layer.6.conv1.weight"),
    "resnet56_first_block": ("layer1.0.conv1.weight", "layer1.0.downsample.0.weight"),  # no projection
}


@pytest.mark.parametrize("case", sorted(DEPTH))
def test_stage_depth_and_projections_are_the_references(case):
    with torch.device("meta"):
        state = create_model(_spec(case.split("_first")[0]), 100, (3, 32, 32)).state_dict()
    present, absent = DEPTH[case]
    assert present in state and absent not in state


@pytest.mark.parametrize("wrapper", ["model", "net", "state_dict"])
def test_a_reference_checkpoint_loads_through_its_wrapper_key(tmp_path, wrapper):
    torch.manual_seed(0)
    trained = create_model(_spec("resnet8"), 100, (3, 32, 32)).eval()
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}  # saved from DataParallel
    path = tmp_path / "ckpt_epoch_240.pth"
    torch.save(
        {wrapper: state, "epoch": 240, "best_acc": torch.tensor(72.5), "optimizer": {"lr": 0.05}}, path
    )
    loaded = load_weights(create_model(_spec("resnet8"), 100, (3, 32, 32)), path, "teacher.checkpoint").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))


def test_a_checkpoint_of_another_architecture_is_one_line_naming_keys(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": create_model(_spec("resnet8"), 100, (3, 32, 32)).state_dict()}, path)
    with pytest.raises(KdrunConfigError) as err:
        load_weights(create_model(_spec("resnet14"), 100, (3, 32, 32)), path, "teacher.checkpoint")
    message = str(err.value)
    assert "\n" not in message and message.startswith("teacher.checkpoint=")
    assert "missing: layer1.1.conv1.weight" in message and "more)" in message
    torch.save({"model": create_model(_spec("resnet8"), 10, (3, 32, 32)).state_dict()}, path)
    with pytest.raises(
        KdrunConfigError, match=r"shape \(file vs model\): fc.weight \(10, 64\) vs \(100, 64\)"
    ):
        load_weights(create_model(_spec("resnet8"), 100, (3, 32, 32)), path, "teacher.checkpoint")
