"""Composition (aliases, groups) and validation: each bad input is one KdrunConfigError."""

import pytest
from omegaconf import OmegaConf

from kdrun.errors import KdrunConfigError
from kdrun.models.sections import model_section
from kdrun.train.validate import validate
from tests.conftest import make_cfg


def test_default_config_is_valid_and_composes_every_group():
    cfg = make_cfg()
    validate(cfg)
    for group in ("teacher", "student", "dataset", "kd", "strategy", "trainer", "logger", "optim"):
        assert group in cfg, group
    assert cfg.dataset.name == "mnist_subset"


def test_one_spelling_per_knob():
    assert make_cfg("T=7").T == 7
    for alias in ("kd.T=7", "kd.alpha=0.5"):
        with pytest.raises(Exception, match=r"kd\.(T|alpha)"):
            make_cfg(alias)


def test_epochs_and_seed_reach_the_student_but_not_the_teacher():
    cfg = OmegaConf.to_container(make_cfg("epochs=3", "seed=5", "teacher.epochs=2"), resolve=True)
    assert (cfg["student"]["epochs"], cfg["student"]["seed"]) == (3, 5)
    assert (cfg["teacher"]["epochs"], cfg["teacher"]["seed"]) == (2, 0)


def test_a_sweep_point_folder_is_one_folder_named_as_typed():
    from kdrun.config.roles import as_typed

    assert as_typed("T=2,model@student=cnn") == "T=2,student=cnn"
    assert as_typed("paths.output_root=/tmp/kd,seed=1") == "paths.output_root=%2Ftmp%2Fkd,seed=1"
    long = ",".join(f"+trainer.option_{i}=value_{i}" for i in range(20))
    names = {as_typed(long), as_typed(long + ",seed=1")}
    assert len(names) == 2  # the hash of the whole name tells them apart
    assert all(len(n.encode()) <= 255 and n.startswith("+trainer.option_0=") for n in names)


def test_one_model_group_in_both_roles_and_in_strategy_lists():
    """teacher=, student= and a strategy's model lists read the same model/ configs: a cnn or mlp
    teacher is the wider one (teacher_size/), and the role brings epochs, seed, checkpoint."""
    cfg = make_cfg("teacher=cnn", "student=cnn", "epochs=7", "seed=3")
    assert (list(cfg.teacher.args.channels), list(cfg.student.args.channels)) == ([32, 64], [8, 16])
    assert "checkpoint" in cfg.teacher and "checkpoint" not in cfg.student
    for role in ("teacher", "student"):
        for name in ("cnn", "mlp", "resnet18"):
            cfg = make_cfg(f"{role}={name}", "epochs=7", "seed=3")
            composed = OmegaConf.to_container(cfg[role], resolve=True)
            assert OmegaConf.to_container(model_section(cfg, name, role, "k")) == composed, (role, name)


def test_mobilenet_student_defaults_to_small_variant_with_fast_bn():
    cfg = make_cfg("teacher=resnet50", "student=mobilenet_v3")
    assert cfg.student.variant == "small"
    assert cfg.student.bn_momentum == pytest.approx(0.1)


BAD = [
    (["T=0"], "T"),
    (["T=-1"], "T"),
    (["T=abc"], "T"),
    (["alpha=1.5"], "alpha"),
    (["alpha=-0.1"], "alpha"),
    (["epochs=0"], "student.epochs"),
    (["teacher.epochs=0"], "teacher.epochs"),
    (["epochs=2.5"], "student.epochs"),
    (["teacher.name=resnet5000"], "teacher.name"),
    (["student.name=nope"], "student.name"),
    (["student=mobilenet_v3", "student.variant=huge"], "student.variant"),
    (["strategy.name=magic"], "strategy.name"),
    (["dataset.name=imagenet22k"], "dataset.name"),
    (["dataset.batch_size=0"], "dataset.batch_size"),
    (["dataset.channels=2"], "dataset.channels"),
    (["teacher.checkpoint=/no/such/teacher.ckpt"], "teacher.checkpoint"),
    (["optim.optimizer.lr=0"], "optim.optimizer.lr"),
    (["optim.schedule=linear"], "optim.schedule"),
    (["seed=-3"], "seed"),
    (["measure.batch_sizes=[]"], "measure.batch_sizes"),
    (["resume=/no/such/run"], "resume"),
    (["trainer.keep_checkpoint=maybe"], "trainer.keep_checkpoint"),
    (["trainer.strategy=fsdp"], "trainer.strategy"),
    (["trainer.devices=0"], "trainer.devices"),
    (["trainer.devices=2", "dataset.batch_size=1"], "dataset.batch_size"),
    (["trainer.precision=8-true"], "trainer.precision"),
    (["trainer.accelerator=tpu"], "trainer.accelerator"),
    (["trainer.num_nodes=2"], "trainer.num_nodes"),  # without torchrun or srun
    (["trainer.num_nodes=0"], "trainer.num_nodes"),
    (["+trainer.max_epochs=3"], "trainer.max_epochs"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
    (["trainer.deterministic=sometimes"], "trainer.deterministic"),
    (["trainer.benchmark=fast"], "trainer.benchmark"),
    (["teacher.seed=-1"], "teacher.seed"),
    (["teacher.precision=bf8"], "teacher.precision"),
    (["student.pretrained=maybe"], "student.pretrained"),
    (["teacher.channels_last=1.5"], "teacher.channels_last"),
    (["student.bn_momentum=1.5"], "student.bn_momentum"),
    (["teacher.args.dropout=1.5"], "teacher.args.dropout"),
    (["dataset.image_size=0"], "dataset.image_size"),
    (["dataset.limit=0"], "dataset.limit"),
    (["dataset.download=yes_please"], "dataset.download"),
    (["dataset.split.seed=-1"], "dataset.split.seed"),
    (["optim.optimizer.weight_decay=-0.1"], "optim.optimizer.weight_decay"),
    (["optim=sgd", "optim.optimizer.momentum=1.5"], "optim.optimizer.momentum"),
    (["optim=sgd", "optim.optimizer.nesterov=sure"], "optim.optimizer.nesterov"),
    (["measure.threads=0"], "measure.threads"),
    (["measure.min_run_time=0"], "measure.min_run_time"),
    (["threads=0"], "threads"),
    (["recalibrate_bn=2"], "recalibrate_bn"),
    (["kd.student_limit=abc"], "kd.student_limit"),
    (["student=ensemble"], "student"),  # the model group holds it; only a teacher can be one
]


@pytest.mark.parametrize(("overrides", "key"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_input_names_the_key_and_what_is_allowed(overrides, key):
    with pytest.raises(KdrunConfigError) as info:
        validate(make_cfg(*overrides))
    assert info.value.key == key
    message = str(info.value)
    assert message.startswith(f"{key}=") and "\n" not in message
    assert any(word in message for word in ("allowed", "must be", "does not exist"))


def test_hydras_compose_given_student_untranslated_is_refused():
    """Hydra's own compose sets `student=cnn` as a string: validate names the Hydra spelling."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["student=cnn"])
    with pytest.raises(KdrunConfigError, match="model@student=<name>"):
        validate(cfg)
