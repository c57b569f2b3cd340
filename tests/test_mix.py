"""dataset.mix: Mixup / CutMix of whole training batches; teacher and student see the same batch."""

import pytest
import torch
from torch import nn

from kdrun.data.datamodule import Mix
from kdrun.errors import KdrunConfigError
from kdrun.strategies import STRATEGIES
from kdrun.train.validate import validate
from kdrun.training.fit import fit
from tests.conftest import make_cfg


def test_teacher_and_student_see_the_same_mixed_batches_with_soft_labels(tiny_data, tmp_path):
    torch.manual_seed(0)
    teacher, student = (
        nn.Sequential(nn.Flatten(), nn.Linear(64, 4)),
        nn.Sequential(nn.Flatten(), nn.Linear(64, 4)),
    )
    seen: dict[str, list[torch.Tensor]] = {"teacher": [], "student": []}
    for name, model in (("teacher", teacher), ("student", student)):
        model.register_forward_pre_hook(
            # the student also runs on validation batches (in eval mode): keep its training inputs
            lambda m, args, name=name: (
                seen[name].append(args[0].clone()) if name == "teacher" or m.training else None
            )
        )
    tiny_data.mix = Mix("cutmix", 1.0, tiny_data.num_classes)
    strategy = STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.5)
    fit(strategy, tiny_data, make_cfg("recalibrate_bn=false"), epochs=1, seed=0, log_dir=tmp_path, label="t")
    assert len(seen["teacher"]) == 5  # 40 samples, batches of 8
    assert all(torch.equal(t, s) for t, s in zip(seen["teacher"], seen["student"], strict=True))
    stored = tiny_data.splits["train"][0]
    inputs = torch.cat(seen["teacher"])
    unchanged = sum(any(torch.equal(row, image) for image in stored) for row in inputs)
    assert unchanged < len(inputs) / 2  # most inputs were mixed


def test_mix_turns_labels_into_class_probabilities():
    x, y = torch.rand(16, 3, 8, 8), torch.arange(16) % 4
    torch.manual_seed(0)
    mixed_x, mixed_y = Mix("mixup", 1.0, 4)(x, y)
    assert mixed_x.shape == x.shape and not torch.equal(mixed_x, x)
    assert mixed_y.shape == (16, 4) and torch.allclose(mixed_y.sum(1), torch.ones(16))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset=cifar10", "dataset.mix=mixin"], r"^dataset.mix='mixin': allowed: mixup, cutmix"),
        (["dataset=cifar10", "dataset.mix=mixup", "dataset.mix_alpha=0"], r"^dataset.mix_alpha=0: must be"),
        (
            ["dataset=cifar10", "dataset.mix=cutmix", "strategy=dkd"],
            r"^dataset.mix='cutmix': not with strategy=dkd",
        ),
    ],
)
def test_bad_mix_settings_name_the_key(overrides, message):
    with pytest.raises(KdrunConfigError, match=message):
        validate(make_cfg(*overrides))
