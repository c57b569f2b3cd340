"""The frozen teacher stays frozen; the strategy registry is the only place methods are named."""

import pytest
import torch
from torch import nn

from kdrun.strategies import STRATEGIES
from kdrun.training.fit import fit
from kdrun.training.module import DistillModule
from tests.conftest import LOGGED, make_cfg


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    teacher = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 4)
    )
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    return teacher, student


def test_teacher_weights_and_bn_statistics_do_not_change_during_distillation(tiny_data, tmp_path):
    teacher, student = _models()
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_student = {k: v.clone() for k, v in student.state_dict().items()}
    strategy = STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.9)
    fit(strategy, tiny_data, make_cfg(), epochs=2, seed=0, log_dir=tmp_path, label="test")
    assert all(torch.equal(before_teacher[k], v) for k, v in teacher.state_dict().items())
    assert not all(torch.equal(before_student[k], v) for k, v in student.state_dict().items())
    assert not teacher.training  # still in eval mode after Lightning's train/eval switches
    assert not any(p.requires_grad for p in teacher.parameters())


def test_module_keeps_teacher_in_eval_mode_when_switched_to_train():
    teacher, student = _models()
    module = DistillModule(STRATEGIES["vanilla"](student, teacher, T=2.0, alpha=0.5), make_cfg().optim, 4)
    module.train()
    assert student.training and not teacher.training


def test_optimizer_holds_only_the_student_parameters():
    teacher, student = _models()
    strategy = STRATEGIES["vanilla"](student, teacher, T=2.0, alpha=0.5)
    trainable = {id(p) for p in strategy.trainable_parameters()}
    assert trainable == {id(p) for p in student.parameters()}


@pytest.mark.parametrize(("every", "rows"), [(1, 5), (2, 2)])
def test_training_logs_every_loss_component(tiny_data, tmp_path, every, rows):
    """Loss terms reach the logger on every ``trainer.log_every_n_steps``-th step (5 steps here)."""
    teacher, student = _models()
    strategy = STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.9)
    cfg = make_cfg(f"trainer.log_every_n_steps={every}")
    metrics = fit(strategy, tiny_data, cfg, epochs=1, seed=0, log_dir=tmp_path, label="test")
    assert set(metrics) >= LOGGED
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert set(header) >= LOGGED
    soft = header.index("train/loss_soft")
    steps = [line.split(",") for line in lines[1:] if line.split(",")[soft]]
    assert len(steps) == rows  # 40 samples / batch 8 = 5 steps
    assert [int(row[header.index("step")]) for row in steps] == list(range(every - 1, 5, every))


def test_cached_teacher_logits_equal_the_live_teacher(tiny_data):
    teacher, student = _models()
    strategy = STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.9)
    live = {
        int(i): strategy.teacher_outputs(x, idx)[k]
        for x, _, idx in tiny_data.train_dataloader()
        for k, i in enumerate(idx)
    }
    strategy.cache_teacher_logits(tiny_data.loader("train"))
    for x, _, idx in tiny_data.train_dataloader():
        cached = strategy.teacher_outputs(x, idx)
        assert torch.allclose(cached, torch.stack([live[int(i)] for i in idx]), atol=1e-6)


def test_cached_and_live_teacher_runs_reach_the_same_student(tiny_data, tmp_path):
    students = []
    for cache in (False, True):
        teacher, student = _models()
        strategy = STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.9)
        if cache:
            strategy.cache_teacher_logits(tiny_data.loader("train"))
        fit(
            strategy,
            tiny_data,
            make_cfg(),
            epochs=2,
            seed=0,
            log_dir=tmp_path / str(cache),
            label="t",
        )
        students.append(student.state_dict())
    assert all(torch.allclose(students[0][k], students[1][k], atol=1e-5) for k in students[0])


def test_a_nan_loss_stops_training_and_names_the_step_and_term(tiny_data, tmp_path):
    import pytest

    from kdrun.training.module import NonFiniteLossError

    teacher, student = _models()
    with torch.no_grad():
        teacher[-1].bias[0] = float("nan")  # the teacher's soft targets become NaN
    strategy = STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.9)
    with pytest.raises(
        NonFiniteLossError, match=r"at step 0 \(epoch 0\); non-finite terms: train/loss_soft=nan"
    ):
        fit(strategy, tiny_data, make_cfg(), epochs=1, seed=0, log_dir=tmp_path, label="t")


def test_same_seed_gives_bitwise_identical_students(tiny_data, tmp_path):
    import lightning as L

    states = []
    for attempt in range(2):
        L.seed_everything(3, verbose=False)
        teacher, student = _models()
        strategy = STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.9)
        fit(strategy, tiny_data, make_cfg(), epochs=2, seed=3, log_dir=tmp_path / str(attempt), label="t")
        states.append(student.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
