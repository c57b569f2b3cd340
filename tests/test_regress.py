"""`kdrun regress`: recipes pass or fail on their metrics; a broken recipe names file and line."""

import contextlib
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from kdrun.regress.bounds import SLACK, Expectation, Reference, Z, allowed_bound
from kdrun.regress.check import check
from kdrun.regress.command import select
from kdrun.regress.compose import recipe_configs
from kdrun.regress.recipe import RecipeError, load_recipe
from kdrun.train.validate import validate
from tests.conftest import REPO, run_kdrun

SMOKE = """# @package _global_
epochs: 1
teacher:
  epochs: 1
dataset:
  limit: 512
measure:
  min_run_time: 0.05
regress:
  description: smoke-sized vanilla KD
  tier: fast
  seeds: [0]
  expect:
    - mean(student.top1) >= {bound}
    - teacher.top1 > 0.5
"""


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def regress_runs(tmp_path_factory, shared_cache):
    """One recipe that is met (the command in its own process), then the same with its bound
    raised above what it reaches (the command in this process, teacher and baseline cached)."""
    from kdrun.cli import main

    cwd = tmp_path_factory.mktemp("regress")
    _write(cwd / "recipes", "met", SMOKE.format(bound=0.3))
    cache = f"paths.cache_dir={shared_cache}"  # the smoke teacher and baseline: the recipe's
    passed = run_kdrun(["regress", "recipes/met.yaml", "--out", "out_pass", "--", cache], cwd)
    _write(cwd / "recipes", "raised", SMOKE.format(bound=0.99))
    stdout, before = io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as info:
            main(["regress", "recipes", "--out", "out_fail", "--", cache])
    finally:
        os.chdir(before)
    failed = SimpleNamespace(returncode=info.value.code, stdout=stdout.getvalue(), stderr="")
    return cwd, passed, failed


def test_a_met_expectation_passes(regress_runs):
    cwd, passed, _ = regress_runs
    assert passed.returncode == 0, passed.stderr[-2000:]
    summary = json.loads((cwd / "out_pass/regress.json").read_text())
    assert summary["status"] == "pass"
    check = summary["recipes"]["met"]["checks"][0]
    assert check["status"] == "pass" and check["measured"] >= 0.3 and len(check["values"]) == 1


def test_a_raised_expectation_fails_with_exit_1_and_names_the_metric(regress_runs):
    cwd, passed, failed = regress_runs
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "FAIL raised: recipes/raised.yaml:14: mean(student.top1) >= 0.99 not met" in failed.stdout
    assert "(no std to compare with: one run, or identical runs)" in failed.stdout
    summary = json.loads((cwd / "out_fail/regress.json").read_text())
    assert summary["recipes"]["raised"]["status"] == "fail"
    assert summary["recipes"]["met"]["status"] == "pass"
    # Same config, same seed: the two recipes measured the same value (deterministic on CPU).
    met, raised = (summary["recipes"][n]["checks"][0]["measured"] for n in ("met", "raised"))
    assert met == raised
    suite = ET.parse(cwd / "out_fail/junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "1"


HEAD = "# @package _global_\nregress:\n  description: x\n  tier: fast\n  seeds: [0]\n"
BROKEN = [
    ("regress:\n  tier: fast\n", "1: a recipe starts with `# @package _global_`"),
    ("# @package _global_\nT: 2.0\n", "missing `regress:` block"),
    (HEAD + "  expect: [student.top1 >= 1]\n  tolerance: 0.1\n", "7: unknown key regress.tolerance"),
    (
        "# @package _global_\nregress:\n  description: x\n  tier: nightly\n  seeds: [0]\n  expect: [a > 1]\n",
        "4: regress.tier='nightly'; allowed: fast, full",
    ),
    (
        HEAD + "  expect:\n    - student.top1 >= 0.9\n    - student.top1 is high\n",
        "8: malformed expectation 'student.top1 is high'",
    ),
    (
        HEAD + "  expect:\n    - mean(studnet.top1) >= 0.9\n",
        "7: metric 'studnet.top1' is not in results.json",
    ),
    (HEAD + "  expect:\n    - median(student.top1) >= 0.9\n", "7: unknown aggregate 'median'"),
    (
        "# @package _global_\ndefaults:\n  - override /teacher: mlp\n"
        + HEAD.split("\n", 1)[1]
        + "  expect: [student.top1 >= 0.5]\n",
        "2: `override /teacher: mlp`: write `override /model@teacher: mlp`",
    ),
]


@pytest.mark.parametrize(("text", "message"), BROKEN)
def test_a_broken_recipe_is_refused_naming_file_and_line(tmp_path, text, message):
    path = _write(tmp_path, "broken", text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}:") and message in str(info.value)


def test_an_unknown_config_key_in_a_recipe_names_its_line(tmp_path):
    text = SMOKE.format(bound=0.3).replace("teacher:\n  epochs: 1", "teacher:\n  epocs: 1")
    assert "epocs" in text
    recipe = load_recipe(_write(tmp_path / "recipe", "typo", text))
    with pytest.raises(RecipeError, match=r"typo.yaml:4: unknown key 'teacher.epocs'"):
        recipe_configs(recipe, [])


def test_a_recipe_may_set_a_model_argument_its_config_does_not_list(tmp_path):
    # `student.args` takes what the model's constructor takes (the CLI's `+student.args.X=…`);
    # a key beside it is still refused.
    text = SMOKE.format(bound=0.3).replace(
        "epochs: 1\nteacher:",
        "defaults:\n  - override /model@student: mobilenet_v3\nstudent:\n  args:\n    width_mult: 0.25\n"
        "epochs: 1\nteacher:",
        1,
    )
    recipe = load_recipe(_write(tmp_path / "recipe", "args", text))
    (config,) = recipe_configs(recipe, []).values()
    assert config.student.name == "mobilenet_v3" and config.student.args.width_mult == 0.25
    typo = text.replace("  args:\n    width_mult", "  argz:\n    width_mult")
    with pytest.raises(RecipeError, match=r"args.yaml:6: unknown key 'student.argz.width_mult'"):
        recipe_configs(load_recipe(_write(tmp_path / "recipe", "args", typo)), [])


def test_cli_refuses_a_broken_recipe_with_one_line(tmp_path, monkeypatch, capsys):
    from kdrun.cli import main

    _write(tmp_path / "recipes", "bad", BROKEN[5][0])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["regress", "recipes"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: recipes/bad.yaml:7: metric 'studnet.top1' is not in results.json; it starts with one of: "
        "teacher, baseline, student, deltas, extra_models, diagnostics, timings_s, duration_s"
    ]


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_parses_composes_and_validates(path):
    recipe = load_recipe(path)
    assert recipe.description and recipe.expect
    for cfg in recipe_configs(recipe, []).values():
        validate(cfg)


# The mnist_hinton gain as measured: +0.90 ± 0.72 points per seed, gated over 3 seeds.
GAIN = """# @package _global_
regress:
  description: x
  tier: fast
  seeds: [0, 1, 2]
  reference:
    deltas.kd_gain_top1: {{mean: 0.009, std: 0.0072}}
  expect:
    - {expect}
"""


def test_the_rule_puts_a_bound_z_noise_units_plus_slack_from_the_reference_mean():
    ref = Reference(mean=0.009, std=0.0072, line=1)
    mean = Expectation("mean", "deltas.kd_gain_top1", ">=", 0.0, 1)
    assert allowed_bound(mean, ref, 3) == pytest.approx(0.009 - Z * 0.0072 / 3**0.5 - SLACK)
    assert allowed_bound(mean, ref, 12) == pytest.approx(0.009 - Z * 0.0072 / 12**0.5 - SLACK)
    per_seed = Expectation("min", "deltas.kd_gain_top1", ">=", 0.0, 1)  # one seed decides a min
    assert allowed_bound(per_seed, ref, 3) == pytest.approx(0.009 - Z * 0.0072 - SLACK)
    upper = Expectation("mean", "timings_s.student", "<=", 0.0, 1)
    assert allowed_bound(upper, Reference(10.0, 2.0, 1), 4) == pytest.approx(10.0 + Z * 1.0 + SLACK)
    assert allowed_bound(Expectation("std", "student.top1", "<=", 0.0, 1), ref, 3) is None


@pytest.mark.parametrize(
    ("expect", "admitted"),
    [
        ("mean(deltas.kd_gain_top1) >= 0.004", "at most -0.0055"),
        ("min(deltas.kd_gain_top1) >= 0", "at most -0.0146"),
    ],
)
def test_a_bound_tighter_than_the_measured_noise_is_refused_with_its_line(tmp_path, expect, admitted):
    path = _write(tmp_path, "tight", GAIN.format(expect=expect))
    with pytest.raises(RecipeError, match=rf"tight.yaml:9: {re.escape(expect)}: too tight .* {admitted}"):
        load_recipe(path)


def test_a_mean_bound_met_by_the_mean_passes_though_one_seed_misses_it(tmp_path):
    recipe = load_recipe(_write(tmp_path, "gain", GAIN.format(expect="mean(deltas.kd_gain_top1) >= -0.0055")))
    runs = [{"status": "ok", "deltas": {"kd_gain_top1": g}} for g in (0.012, 0.010, -0.008)]
    (verdict,) = check(recipe, runs)
    assert min(verdict.values) < recipe.expect[0].value < verdict.measured
    assert verdict.status == "pass"
    assert verdict.margin_units == pytest.approx((0.014 / 3 + 0.0055) / (0.0072 / 3**0.5))


def test_a_failure_reports_its_distance_in_noise_units_regression_or_noise(tmp_path):
    recipe = load_recipe(_write(tmp_path, "gain", GAIN.format(expect="mean(deltas.kd_gain_top1) >= -0.0055")))
    unit = 0.0072 / 3**0.5
    broken = [{"status": "ok", "deltas": {"kd_gain_top1": g}} for g in (-0.030, -0.020, -0.025)]
    (verdict,) = check(recipe, broken)
    assert verdict.status == "fail" and verdict.unit == pytest.approx(unit)
    assert f"= {(0.025 - 0.0055) / unit:.1f} x std/sqrt(n) (0.0042, from the recipe's reference, n=3)" in (
        verdict.message
    )
    assert f"{(-0.025 - 0.009) / unit:+.1f} units from the reference mean 0.0090" in verdict.message
    assert verdict.message.endswith("a regression")
    # Without a reference the unit is the std over the run's own seeds.
    bare = load_recipe(
        _write(
            tmp_path,
            "bare",
            GAIN.replace("  reference:\n    deltas.kd_gain_top1: {{mean: 0.009, std: 0.0072}}\n", "").format(
                expect="mean(deltas.kd_gain_top1) >= 0"
            ),
        )
    )
    (verdict,) = check(bare, broken)
    assert verdict.unit == pytest.approx(0.005 / 3**0.5) and "from this run's seeds" in verdict.message
    assert "reference mean" not in verdict.message


def test_seeds_replace_every_recipes_own(tmp_path):
    _write(tmp_path / "recipes", "gain", GAIN.format(expect="mean(deltas.kd_gain_top1) >= -0.01"))
    (recipe,) = select([tmp_path / "recipes"], "fast", [3, 4, 5, 6])
    assert recipe.seeds == [3, 4, 5, 6]


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_accuracy_bound_rests_on_a_measured_reference(path):
    recipe = load_recipe(path)  # the rule checks each bound against its reference when it loads
    gated = {e.metric for e in recipe.expect if e.metric.endswith("top1")}
    assert gated and gated <= set(recipe.reference)


MISSING_DATA = """# @package _global_
defaults:
  - override /dataset: fashion_mnist
epochs: 1
regress:
  description: a recipe on a data set this machine does not have
  tier: fast
  seeds: [0, 1]
  expect:
    - mean(student.top1) >= 0.5
"""


def test_a_recipe_whose_data_set_is_absent_is_skipped_with_the_reason_not_passed(tmp_path):
    _write(tmp_path / "recipes", "absent", MISSING_DATA)
    empty = tmp_path / "no_data"
    empty.mkdir()
    result = run_kdrun(["regress", "recipes", "--out", "out", "--", f"dataset.search=[{empty}]"], tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "SKIPPED absent: skipped: dataset.root=None: FashionMNIST's IDX files" in result.stdout
    summary = json.loads((tmp_path / "out/regress.json").read_text())
    assert summary["status"] == "skipped" and summary["skipped"] == ["absent"]
    (check,) = summary["recipes"]["absent"]["checks"]
    assert check["status"] == "skipped" and "apt-get install dataset-fashion-mnist" in check["message"]
    assert check["measured"] is None
    suite = ET.parse(tmp_path / "out/junit.xml").getroot().find("testsuite")
    assert suite.get("skipped") == "1" and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert suite.find("testcase/skipped") is not None
    assert "| absent | fast | – | skipped: " in (tmp_path / "out/results.md").read_text()
    assert not (tmp_path / "out/absent/seed1").exists()  # the other seeds are not tried


def test_tier_real_takes_the_recipes_in_data_set_folders_and_all_leaves_them_out(tmp_path):
    _write(tmp_path / "recipes", "gain", GAIN.format(expect="mean(deltas.kd_gain_top1) >= -0.01"))
    _write(
        tmp_path / "recipes/fashion_mnist",
        "deep",
        GAIN.replace("tier: fast", "tier: real").format(expect="student.top1 >= 0.5"),
    )
    assert [r.name for r in select([tmp_path / "recipes"], "real")] == ["deep"]
    assert [r.name for r in select([tmp_path / "recipes"], "all")] == ["gain"]
    assert [r.name for r in select([tmp_path / "recipes"], "fast")] == ["gain"]


@pytest.mark.parametrize(
    "path", sorted((REPO / "recipes/fashion_mnist").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_shipped_real_data_recipe_parses_composes_and_validates(path):
    recipe = load_recipe(path)
    assert recipe.description and recipe.expect and recipe.tier == "real"
    for cfg in recipe_configs(recipe, []).values():
        validate(cfg)


def test_regress_interrupted_mid_recipe_writes_what_finished_and_continues(tmp_path, shared_cache):
    """SIGINT while a recipe's second run is under way: one line, exit 130, the first run's
    results kept and reported; the printed command finishes the rest and skips the first run."""
    import shlex
    import signal
    import subprocess

    from tests.conftest import KDRUN

    _write(tmp_path / "recipes", "two", SMOKE.format(bound=0.3).replace("seeds: [0]", "seeds: [0, 1]"))
    args = ["regress", "recipes/two.yaml", "--out", "out", "--", f"paths.cache_dir={shared_cache}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(
        [*KDRUN, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    second = False
    for line in run.stdout:
        second = second or line.startswith("regress: two seed1 ->")  # seed 0 finished
        if second and line.startswith("device: "):  # seed 1's run has started writing its folder
            run.send_signal(signal.SIGINT)
            break
    stderr = run.communicate(timeout=300)[1]
    assert run.returncode == 130, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert stderr.startswith("interrupted: SIGINT during the ") and "0/1 recipe(s) finished" in stderr
    assert json.loads((tmp_path / "out/two/seed0/results.json").read_text())["status"] == "ok"
    assert json.loads((tmp_path / "out/two/seed1/results.json").read_text())["status"] == "interrupted"
    assert json.loads((tmp_path / "out/regress.json").read_text())["status"] == "interrupted"

    again = shlex.split(stderr.split("continue with: ")[1].split("  (")[0])
    assert again[0] == "kdrun" and again[again.index("--out") + 1] == "out"
    resumed = run_kdrun(again[1:], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "regress: two seed0: finished earlier" in resumed.stdout
    assert "regress: two seed1 ->" in resumed.stdout
    summary = json.loads((tmp_path / "out/regress.json").read_text())
    assert summary["status"] == "pass" and summary["recipes"]["two"]["checks"][0]["values"][1:]
