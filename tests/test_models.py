"""The model factory: built-ins and torchvision models sized to the data set."""

import pytest
import torch
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.models import create_model, model_names


def spec(name: str, **extra) -> dict:
    return {
        "name": name,
        "variant": None,
        "args": {},
        "pretrained": False,
        "bn_momentum": None,
        **extra,
    }


@pytest.mark.parametrize(
    ("model_spec", "shape"),
    [
        (spec("mlp", args={"hidden": [16]}), (1, 28, 28)),
        (spec("cnn", args={"channels": [4, 8], "hidden": 8}), (1, 28, 28)),
        (spec("resnet18"), (1, 28, 28)),
        (spec("mobilenet_v3"), (1, 28, 28)),
        (spec("resnet18"), (3, 32, 32)),
    ],
    ids=["mlp", "cnn", "resnet18-grey", "mobilenet_v3-grey", "resnet18-rgb"],
)
def test_models_take_the_data_shape_and_output_the_class_count(model_spec, shape):
    model = create_model(model_spec, num_classes=7, input_shape=shape).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_mobilenet_variant_selects_the_torchvision_model():
    small = create_model(spec("mobilenet_v3"), 10, (3, 32, 32))
    large = create_model(spec("mobilenet_v3", variant="large"), 10, (3, 32, 32))
    n_small = sum(p.numel() for p in small.parameters())
    n_large = sum(p.numel() for p in large.parameters())
    assert n_large > 2 * n_small


def test_bn_momentum_is_applied_to_every_batchnorm():
    model = create_model(spec("mobilenet_v3", bn_momentum=0.1), 10, (1, 28, 28))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == pytest.approx(0.1) for m in norms)


def test_unknown_model_lists_the_allowed_names():
    with pytest.raises(KdrunConfigError, match="allowed: mlp, cnn, mobilenet_v3"):
        create_model(spec("resnet5000"), 10, (1, 28, 28))


def test_model_names_include_builtins_and_torchvision():
    names = model_names()
    assert {"mlp", "cnn", "mobilenet_v3", "resnet50", "efficientnet_b0"} <= set(names)


def test_pretrained_weights_get_a_new_head_and_a_grey_stem(monkeypatch):
    import torchvision

    real_get_model = torchvision.models.get_model
    asked = {}

    def offline_get_model(name, weights=None, **kwargs):
        asked["weights"] = weights  # no download here: random ImageNet-shaped weights stand in
        return real_get_model(name, weights=None, **kwargs)

    monkeypatch.setattr(torchvision.models, "get_model", offline_get_model)
    torch.manual_seed(0)
    model = create_model(
        spec("resnet18", pretrained=True, stem="imagenet"), num_classes=10, input_shape=(1, 28, 28)
    )
    assert asked["weights"] == "DEFAULT"
    assert model.fc.out_features == 10 and model.conv1.in_channels == 1
    torch.manual_seed(0)
    rgb = real_get_model("resnet18", weights=None)
    expected = rgb.conv1.weight.sum(dim=1, keepdim=True)  # grey input = the sum of the RGB filters
    assert torch.allclose(model.conv1.weight, expected)


def test_channels_last_changes_the_layout_not_the_function():
    torch.manual_seed(0)
    plain = create_model(spec("mobilenet_v3"), 10, (1, 28, 28)).eval()
    torch.manual_seed(0)
    nhwc = create_model(spec("mobilenet_v3", channels_last=True), 10, (1, 28, 28)).eval()
    stem = next(m for m in nhwc.modules() if isinstance(m, nn.Conv2d))
    assert stem.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain(x), nhwc(x), atol=1e-4)


def _last_map(model: nn.Module, module: str, shape: tuple[int, int, int]) -> tuple[int, int]:
    seen = []
    model.get_submodule(module).register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-2:]))
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    return tuple(seen[0])


@pytest.mark.parametrize(
    ("stem", "shape", "expected"),
    [
        ("auto", (3, 32, 32), (4, 4)),
        ("imagenet", (3, 32, 32), (1, 1)),
        ("auto", (3, 64, 64), (2, 2)),
        ("cifar", (1, 28, 28), (4, 4)),
    ],
)
def test_stem_sets_the_resolution_of_resnets_last_stage(stem, shape, expected):
    model = create_model(spec("resnet18", stem=stem), 10, shape)
    assert _last_map(model, "layer4", shape) == expected
    assert model.conv1.in_channels == shape[0]


def test_small_input_stem_of_mobilenet_and_efficientnet_keeps_the_first_conv_at_stride_1():
    for name in ("mobilenet_v3", "efficientnet_b0"):
        small = create_model(spec(name), 10, (3, 32, 32))
        large = create_model(spec(name), 10, (3, 96, 96))
        assert small.features[0][0].stride == (1, 1) and large.features[0][0].stride == (2, 2)


def test_cifar_stem_on_a_model_without_one_is_rejected(cfg_factory):
    from kdrun.train.validate import validate

    with pytest.raises(KdrunConfigError, match=r"^teacher.stem='cifar': no small-input stem for squeez"):
        validate(cfg_factory("teacher=resnet18", "teacher.name=squeezenet1_0", "teacher.stem=cifar"))
    with pytest.raises(KdrunConfigError, match=r"^student.stem='tiny': allowed: auto, imagenet, cifar"):
        validate(cfg_factory("student=resnet18", "student.stem=tiny"))


def test_the_stem_is_part_of_a_torchvision_models_cache_spec(cfg_factory):
    from kdrun.models.build import model_spec

    cfg = cfg_factory("teacher=resnet50", "student=mobilenet_v3", "student.stem=imagenet")
    assert model_spec(cfg.teacher)["stem"] == "auto" and model_spec(cfg.student)["stem"] == "imagenet"
    assert "stem" not in model_spec(cfg_factory().teacher)  # kdrun's cnn: no stem, key unchanged
