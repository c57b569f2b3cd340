"""Every strategy runs end to end on the embedded data (debug=smoke) and reports what it trained."""

import json
from pathlib import Path

import pytest
import torch

import kdrun.train.pipeline as run_module
from kdrun.errors import KdrunConfigError
from kdrun.strategies import STRATEGIES
from kdrun.training.module import DistillModule
from tests.conftest import make_cfg

CHANCE = 0.1  # 10 classes
FAST_TEACHERS = "strategy.teachers=[{name:cnn,epochs:2},{name:mlp,epochs:2}]"
FAST_ASSISTANT = "strategy.assistants=[{name:cnn,epochs:2,args:{channels:[8],hidden:32}}]"


def _run(tmp_path, cache, *overrides: str) -> dict:
    cfg = make_cfg("debug=smoke", f"paths.output_root={tmp_path}", f"paths.cache_dir={cache}", *overrides)
    results = run_module.train(cfg, tmp_path / "run")
    assert results == json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "ok"
    assert results["student"]["top1"] > CHANCE + 0.1
    return results


def test_multi_teacher_reports_the_ensemble_and_each_member(tmp_path, shared_cache):
    results = _run(
        tmp_path, shared_cache, "strategy=multi_teacher", FAST_TEACHERS, "strategy.weighting=confidence"
    )
    assert results["teacher"]["name"] == "ensemble(cnn+mlp)"
    assert [results["extra_models"][r]["name"] for r in ("teacher_1", "teacher_2")] == ["cnn", "mlp"]
    members = results["extra_models"]
    assert results["teacher"]["params"] == members["teacher_1"]["params"] + members["teacher_2"]["params"]
    assert results["strategy"]["weighting"] == "confidence"


def test_ta_chain_distils_through_a_cached_assistant(tmp_path, shared_cache):
    results = _run(tmp_path, shared_cache, "strategy=ta_chain", FAST_ASSISTANT)
    assistant = results["extra_models"]["assistant_1"]
    assert assistant["source"] == "trained" and "kd_gain_top1" in assistant["deltas"]
    assert assistant["scratch"]["name"] == "cnn"
    assert results["strategy"]["chain"] == ["cnn"]
    again = run_module.train(
        make_cfg(
            "debug=smoke",
            f"paths.output_root={tmp_path}",
            f"paths.cache_dir={shared_cache}",
            "strategy=ta_chain",
            FAST_ASSISTANT,
        ),
        tmp_path / "run2",
    )
    assert again["extra_models"]["assistant_1"]["source"] == "cache"
    assert again["student"]["top1"] == results["student"]["top1"]  # deterministic on CPU


def test_mutual_reports_every_peer_and_no_teacher(tmp_path, shared_cache):
    results = _run(tmp_path, shared_cache, "strategy=mutual", "strategy.peers=[mlp,cnn]")
    assert results["teacher"] is None and results["deltas"]["gap_to_teacher_top1"] is None
    peers = results["extra_models"]
    assert sorted(peers) == ["peer_2", "peer_3"] and peers["peer_3"]["name"] == "cnn"
    assert all(p["source"] == "trained-in-run" and p["top1"] > CHANCE + 0.1 for p in peers.values())
    assert results["strategy"]["peers"] == 3


def test_online_trains_the_teacher_in_the_run(tmp_path, shared_cache):
    results = _run(tmp_path, shared_cache, "strategy=online")
    assert results["teacher"]["source"] == "trained-in-run"
    assert results["teacher"]["top1"] > CHANCE + 0.1
    assert results["strategy"]["weights"] == {"teacher_hard": 1.0, "soft": 0.9, "hard": pytest.approx(0.1)}


def test_dkd_logs_its_own_terms(tmp_path, shared_cache):
    results = _run(tmp_path, shared_cache, "strategy=dkd")
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_tckd", "train/loss_nckd", "train/loss_hard"} <= set(header)
    assert results["strategy"]["weights"] == {"hard": 1.0, "tckd": 1.0, "nckd": 8.0}


def test_soft_label_file_reproduces_vanilla_without_a_teacher(tmp_path, shared_cache):
    from kdrun.commands.export_soft_labels import export_task

    out = tmp_path / "labels.safetensors"
    export_task(
        make_cfg(
            "debug=smoke",
            f"paths.output_root={tmp_path}",
            f"paths.cache_dir={shared_cache}",
            f"out={out}",
            config_name="export_soft_labels",
        )
    )
    from_file = _run(tmp_path, shared_cache, "strategy=soft_labels", f"strategy.path={out}")
    vanilla = _run(tmp_path / "v", shared_cache)
    assert from_file["teacher"] is None
    assert from_file["strategy"]["soft_labels"]["teacher"] == "cnn"
    assert from_file["student"]["top1"] == vanilla["student"]["top1"]  # the same soft targets


def test_a_strategy_step_logs_the_terms_it_declares(tiny_data):
    torch.manual_seed(0)
    for name in ("mutual", "online"):
        cfg = make_cfg(f"strategy={name}", "dataset=digits")
        student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
        other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
        strategy = (
            STRATEGIES[name](student, [other], peer_temperature=1.0, peer_weight=1.0)
            if name == "mutual"
            else STRATEGIES[name](student, other, T=4.0, alpha=0.5)
        )
        x, y, idx = next(iter(tiny_data.train_dataloader()))
        logits, terms = strategy.loss_terms(x, y, idx)
        assert set(terms) == set(strategy.weights) and logits.shape == (8, 4)
        params = {id(p) for p in DistillModule(strategy, cfg.optim, 4).strategy.trainable_parameters()}
        assert params == {id(p) for p in [*student.parameters(), *other.parameters()]}  # both train


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["strategy=multi_teacher", "strategy.teachers=[cnn]"], "strategy.teachers", "at least 2"),
        (["strategy=multi_teacher", "strategy.teachers=[cnn,nope]"], "strategy.teachers[1]", "allowed: cnn"),
        (["strategy=multi_teacher", "strategy.weighting=fixed"], "strategy.weights", "one per teacher"),
        (
            ["strategy=multi_teacher", "strategy.weighting=vote"],
            "strategy.weighting",
            "mean, fixed, confidence",
        ),
        (
            ["strategy=ta_chain", "strategy.assistants=[{name:cnn,depth:3}]"],
            "strategy.assistants[0].depth",
            "allowed keys",
        ),
        (["strategy=mutual", "strategy.peers=[]"], "strategy.peers", "at least 1"),
        (["strategy=mutual", "strategy.peer_temperature=0"], "strategy.peer_temperature", "> 0"),
        (["strategy=dkd", "strategy.nckd_weight=-1"], "strategy.nckd_weight", ">= 0"),
        (["strategy=soft_labels"], "strategy.path", "required"),
        (
            ["strategy=soft_labels", "strategy.path=missing.safetensors"],
            "strategy.path",
            "does not exist",
        ),
    ],
)
def test_bad_strategy_input_is_refused_before_training(tmp_path, overrides, key, message):
    cfg = make_cfg("debug=smoke", f"paths.output_root={tmp_path}", *overrides)
    with pytest.raises(KdrunConfigError, match=message) as info:
        run_module.train(cfg, tmp_path / "run")
    assert info.value.key == key
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()  # nothing trained


def test_every_registered_strategy_has_a_config_and_a_test():
    from importlib.resources import files

    configs = {p.name.removesuffix(".yaml") for p in (files("kdrun.conf") / "strategy").iterdir()}
    assert set(STRATEGIES) <= configs


def test_student_limit_trains_the_student_side_on_fewer_images_than_the_teacher(tmp_path, shared_cache):
    results = _run(tmp_path, shared_cache, "kd.student_limit=256")
    assert results["data"]["train"] == 512 and results["data"]["student_train"] == 256
    teacher_spec, baseline_spec = (
        json.loads((Path(results["paths"][role]) / "spec.json").read_text())
        for role in ("teacher", "baseline")
    )
    assert teacher_spec["data"] == results["data"]["fingerprint"]  # the teacher saw all 512
    assert baseline_spec["data"] != results["data"]["fingerprint"]  # the scratch student saw 256


def test_head_keeps_the_first_samples_and_changes_the_fingerprint(tiny_data):
    head = tiny_data.head(10)
    assert torch.equal(head.splits["train"][0], tiny_data.splits["train"][0][:10])
    assert head.splits["test"] is tiny_data.splits["test"]
    assert head.fingerprint != tiny_data.fingerprint
