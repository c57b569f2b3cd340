"""`kdrun tune`: pruning, resuming a study, the validation-only search, bad spaces, parallel
processes on one study, and a signal mid-trial."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.trial import TrialState

import kdrun.train.prepare as prepare_module
from kdrun.commands.tune import main as tune_main
from kdrun.errors import KdrunConfigError
from kdrun.runtime import preemption
from kdrun.tune.space import Space, load_space
from kdrun.tune.study import Budget, open_storage, open_study, storage_url
from kdrun.tune.trial import PruneOnValAcc
from tests.conftest import KDRUN, run_kdrun

# Trials of two epochs on 128 smoke images: the search's mechanics, not its accuracies.
TINY = ["debug=smoke", "dataset.limit=128", "epochs=2", "threads=1", "measure.batch_sizes=[1]"]


@pytest.fixture
def threads():
    """`kdrun tune` sets torch's threads for its trials; the test process gets its own back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _args(tmp_path: Path, cache: Path, *extra: str) -> list[str]:
    return [*TINY, f"paths.output_root={tmp_path}/out", f"paths.cache_dir={cache}", *extra]


def _study(tmp_path: Path, name: str) -> optuna.Study:
    folder = tmp_path / "out" / "tune" / name
    return optuna.load_study(study_name=name, storage=open_storage(storage_url(folder)))


def test_the_pruner_stops_trials_whose_val_acc_trails_on_a_toy_objective(tmp_path):
    """Each toy trial's val/acc climbs at its own rate; reported through kdrun's Lightning
    callback, the median pruner stops the slow ones once three trials have finished."""
    space = load_space("tune/kd_default.yaml")
    study = open_study("toy", open_storage(storage_url(tmp_path)), space, [])
    for rate in (0.5, 0.6, 0.7, 0.1, 0.8, 0.05, 0.9):
        trial = study.ask()
        callback = PruneOnValAcc(trial)
        try:
            for epoch in range(5):
                metrics = {"val/acc": torch.tensor(rate * (epoch + 1) / 5)}
                trainer = SimpleNamespace(
                    callback_metrics=metrics, current_epoch=epoch, sanity_checking=False
                )
                callback.on_validation_end(trainer, None)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        study.tell(trial, rate)
    pruned = [t.number for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned == [3, 5]  # the 0.1 and 0.05 trials; every other one ran to the end
    assert all(len(study.trials[n].intermediate_values) == 2 for n in pruned)  # warm-up 1, then pruned
    assert study.best_value == 0.9


def test_a_second_run_under_the_same_name_continues_the_study(tmp_path, shared_cache, threads, capsys):
    args = _args(tmp_path, shared_cache, "--name", "again", "--seeds")
    tune_main([*args, "--budget", "1"])
    first = _study(tmp_path, "again")
    assert [t.state for t in first.trials] == [TrialState.COMPLETE]
    tune_main([*args, "--budget", "2"])
    second = _study(tmp_path, "again")
    assert second._study_id == first._study_id
    assert [t.number for t in second.trials] == [0, 1]
    assert second.trials[0].params == first.trials[0].params  # trial 0 kept, not re-run
    out = capsys.readouterr().out
    assert out.count("trial 0:") == 1 and out.count("trial 1:") == 1
    # A different space under the same name is refused, naming the option.
    with pytest.raises(KdrunConfigError, match="--name='again'.*other space"):
        tune_main([*args, "--budget", "3", "--space", "tune/dkd.yaml"])


class _WatchedSplits(dict):
    """The data module's splits, noting the preemption phase of every read of ``test``."""

    reads: list[str] = []

    def __getitem__(self, key):
        if key == "test":
            self.reads.append(preemption._phase)
        return super().__getitem__(key)


def test_the_search_never_reads_the_test_split_only_the_confirmation_does(
    tmp_path, shared_cache, threads, monkeypatch
):
    real = prepare_module._datamodule

    def watched(*args):
        data = real(*args)
        if not isinstance(data.splits, _WatchedSplits):
            data.splits = _WatchedSplits(data.splits)
        return data

    _WatchedSplits.reads = []
    monkeypatch.setattr(prepare_module, "_datamodule", watched)
    args = _args(tmp_path, shared_cache, "--name", "val-only", "--budget", "2", "--no-compare")
    tune_main([*args, "--seeds"])  # the search alone
    assert len(_study(tmp_path, "val-only").trials) == 2
    assert _WatchedSplits.reads == []
    tune_main([*args, "--seeds", "0"])  # budget spent: the best point is confirmed on seed 0
    assert "evaluate" in _WatchedSplits.reads  # the watch sees the confirmation's test reads
    reads = len(_WatchedSplits.reads)
    tune_main([*args, "--seeds", "0"])  # again: the confirmation run is read back, not repeated
    assert len(_WatchedSplits.reads) == reads
    summary = json.loads((tmp_path / "out/tune/val-only/tune.json").read_text())
    assert summary["confirm"]["best"]["student.top1"]["values"][0] > 0
    assert (tmp_path / "out/tune/val-only/report.html").is_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params: {T: {type: float, low: 4.0, high: 2.0}}", "params.T.high=2.0: must be > low (4.0)"),
        ("params: {T: {type: float, low: 0.0, high: 2.0, log: true}}", "params.T.low=0.0: must be > 0"),
        (
            "params: {T: {type: normal, low: 1, high: 2}}",
            "params.T.type='normal': allowed: float, int, categorical",
        ),
        (
            "params: {T: {type: float, low: 1, high: 2}}\npruner: {name: hyperband}",
            "pruner.name='hyperband': allowed",
        ),
        ("params: {T: {type: float, low: 1, high: 2}}\nsampler: {seeds: 1}", "sampler.seeds=1: allowed keys"),
        (
            "params: {alpha: {type: float, low: 0.5, high: 1.5}}",
            "params.alpha.high=1.5: must be a number in [0, 1]",
        ),
        ("params: {alhpa: {type: float, low: 0.1, high: 0.5}}", "params.alhpa='alhpa': not a config key"),
    ],
)
def test_a_bad_space_file_is_one_line_naming_key_value_and_allowed(tmp_path, text, expected, capsys):
    space = tmp_path / "bad.yaml"
    space.write_text(text + "\n")
    with pytest.raises(SystemExit) as stopped:
        from kdrun.cli import main

        main(["tune", *TINY, f"paths.output_root={tmp_path}/out", "--space", str(space)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out" / "tune").exists() or not list((tmp_path / "out/tune").rglob("trials"))


def test_budget_and_space_spellings():
    assert Budget.parse("30m") == Budget(seconds=1800)
    assert Budget.parse("12") == Budget(trials=12)
    with pytest.raises(KdrunConfigError, match="--budget='ten'"):
        Budget.parse("ten")
    with pytest.raises(KdrunConfigError, match="kdrun's spaces: .*tune/kd_default"):
        load_space("tune/nope.yaml")
    assert isinstance(load_space("tune/dkd"), Space)


def test_two_processes_share_one_study(tmp_path, shared_cache):
    """--jobs 2: a second process on the same SQLite file; the study gets the budget's trials,
    each number once, from both processes (the first waits until the second has opened the study)."""
    space = tmp_path / "space.yaml"
    space.write_text("params: {T: {type: float, low: 1.0, high: 8.0}}\npruner: {name: none}\n")
    args = _args(tmp_path, shared_cache, "epochs=4", "--name", "pair", "--budget", "4", "--space", str(space))
    run = run_kdrun(["tune", *args, "--jobs", "2", "--seeds"], tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    study = _study(tmp_path, "pair")
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(finished) in (4, 5) and len({t.number for t in study.trials}) == len(study.trials)
    assert {t.user_attrs["worker"] for t in study.trials} == {0, 1}  # both processes ran trials
    assert "[worker 1] trial" in run.stdout


def test_sigterm_mid_trial_fails_the_trial_and_says_how_to_continue(tmp_path, shared_cache):
    args = ["tune", *_args(tmp_path, shared_cache, "epochs=8", "--name", "stop", "--budget", "3", "--seeds")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*KDRUN, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    log = tmp_path / "out/tune/stop/trials/0000/train.log"
    deadline = time.monotonic() + 300
    while "[student] epoch 1/8" not in (log.read_text() if log.exists() else "") and proc.poll() is None:
        assert time.monotonic() < deadline, "the first trial did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = (s.decode() for s in proc.communicate(timeout=120))
    assert proc.returncode == 143, err[-3000:]
    assert [t.state for t in _study(tmp_path, "stop").trials] == [TrialState.FAIL]
    assert "continue with: kdrun tune " in err and "--name stop" in err


def test_the_exported_recipe_is_one_kdrun_regress_runs_at_the_best_point(tmp_path):
    from kdrun.regress.compose import recipe_configs
    from kdrun.regress.recipe import load_recipe
    from kdrun.tune.confirm import export_recipe
    from kdrun.tune.search import Tuning

    space = load_space("tune/dkd.yaml")
    tuning = Tuning("t", tmp_path, "sqlite://", space, ["student=cnn", "epochs=3", "debug=smoke"])
    best = {"T": 2.5, "strategy.tckd_weight": 0.5, "strategy.nckd_weight": 4.0}
    found = {"best": {"seeds": [0, 1, 2], "student.top1": {"mean": 0.93, "std": 0.01}}}
    path = tmp_path / "recipe" / "tuned.yaml"
    export_recipe(path, tuning, best, found)
    recipe = load_recipe(path)
    assert recipe.seeds == [0, 1, 2] and [str(e) for e in recipe.expect] == ["mean(student.top1) >= 0.91"]
    configs = recipe_configs(recipe, [])
    assert list(configs) == ["seed0", "seed1", "seed2"]
    cfg = configs["seed1"]
    assert (cfg.strategy.name, cfg.student.name, cfg.T, cfg.strategy.nckd_weight) == ("dkd", "cnn", 2.5, 4.0)
    assert (cfg.epochs, cfg.teacher.epochs, cfg.dataset.limit, cfg.seed) == (3, 1, 512, 1)
