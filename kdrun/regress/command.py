"""``kdrun regress``: run every selected recipe over its seeds, check its expectations, report.

Writes ``regress.json`` and a JUnit XML report (one test case per expectation) to the output
folder, prints a pass/fail table, and returns the exit code: 0 all pass, 1 any regression or
missing metric. A recipe whose data set is not on the machine is reported as skipped, with the
reason (``kdrun.errors.DataNotFound``): not a pass, and not a failure. The checks and their
margins in noise units: ``kdrun.regress.check``. One ``kdrun regress`` at a time writes into a
folder: a second one into the same ``--out`` is refused.
"""

import shlex
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import OmegaConf
from rich.table import Table
from rich.text import Text

from kdrun.console import console, err_console, styled
from kdrun.errors import DataNotFound, KdrunConfigError
from kdrun.files import refuse_links, write_atomic
from kdrun.progress import phase
from kdrun.regress.check import Verdict, check
from kdrun.regress.compose import recipe_configs
from kdrun.regress.markdown import write_results_markdown
from kdrun.regress.recipe import Recipe, RecipeError, find_recipes, load_recipe
from kdrun.report import write_json_atomic
from kdrun.runtime import preemption
from kdrun.train.validate import validate

LOCK = ".kdrun-regress.lock"  # held by the kdrun regress writing into the folder


def _run_recipe(recipe: Recipe, configs: dict, out: Path) -> dict[str, dict[str, Any]]:
    """Run label -> results (``status: failed`` and the error for a run that raised; one
    ``status: skipped`` run, and nothing else run, when the recipe's data is not here).

    A run whose results.json says ``ok`` for the same config (an earlier, interrupted regress into
    the same ``--out``) is not run again; one stopped mid-fit continues from its checkpoint.
    """
    from kdrun.train.pipeline import record_failure, train  # heavy imports only when something runs

    runs = {}
    for label, cfg in configs.items():
        run_dir = out / recipe.name / label
        earlier = preemption.previous_point(run_dir, OmegaConf.to_container(cfg, resolve=True))
        if earlier is not None and earlier.get("status") == "ok":
            console.print(f"regress: {recipe.name} {label}: finished earlier, in {run_dir}")
            runs[label] = earlier
            continue
        if earlier is not None and (run_dir / "checkpoints" / "last.ckpt").is_file():
            cfg.resume = str(run_dir)
        console.print(styled("regress", "bold", f": {recipe.name} {label} -> {run_dir}"))
        started = time.perf_counter()
        try:
            runs[label] = train(cfg, run_dir)
        except DataNotFound as err:  # refused before anything trained; the other seeds would be too
            return {label: {"status": "skipped", "reason": str(err)}}
        except preemption.RunInterrupted as err:
            if run_dir.is_dir():  # stopped before the run wrote anything: nothing to record
                record_failure(cfg, run_dir, err, started)
            raise
        except Exception as err:  # recorded in the run's results.json; the recipe fails
            runs[label] = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    if recipe.sweep:  # summary table, CSV and (for a T x alpha grid) the heatmap of the sweep
        from kdrun.report.command import report

        report(out / recipe.name, "gain")
    return runs


def select(targets: list[Path], tier: str, seeds: list[int] | None = None) -> list[Recipe]:
    """The recipes of ``tier`` in ``targets``, on ``seeds`` instead of their own when given."""
    # real (hours on real data sets) and gpu recipes live in a folder per data set, and run only
    # when asked for by name; `all` is fast + full.
    recipes = [load_recipe(p) for p in find_recipes(targets, subfolders=tier in ("real", "gpu"))]
    selected = [r for r in recipes if r.tier == tier or (tier == "all" and r.tier in ("fast", "full"))]
    if not selected:
        raise RecipeError(f"no recipe of tier {tier!r} in {', '.join(map(str, targets))}")
    return [replace(r, seeds=list(seeds)) for r in selected] if seeds else selected


def regress(
    targets: list[Path], tier: str, out: Path | None, extra: list[str], seeds: list[int] | None = None
) -> int:
    """Run the recipes; return the exit code. Bad recipes raise ``RecipeError`` before any run.
    ``seeds`` replaces every recipe's own seeds (check the bounds on seeds they were not set on).

    SIGINT / SIGTERM (``kdrun.runtime.preemption``): the finished recipes' reports are written,
    one line says how to continue (the same command into the same ``--out``), exit 130 / 143."""
    selected = select(targets, tier, seeds)
    out = out or Path("outputs/regress") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    # Before the lock file: the runs' writers (Lightning, the loggers) and FileLock follow a link.
    refuse_links(out, "--out")
    lock = FileLock(out / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RecipeError(
            f"--out {out}: another kdrun regress is writing into this folder (it holds {out / LOCK}); "
            "wait for it to finish or choose another --out"
        ) from None
    try:
        return _regress(selected, targets, tier, out, extra, seeds)
    finally:
        lock.release()


def _regress(
    selected: list[Recipe],
    targets: list[Path],
    tier: str,
    out: Path,
    extra: list[str],
    seeds: list[int] | None,
) -> int:
    """``regress`` once the output folder is ours."""
    planned = {}
    for recipe in selected:  # compose and validate everything before running anything
        configs = recipe_configs(recipe, extra)
        for cfg in configs.values():
            try:
                validate(cfg)
            except KdrunConfigError as err:
                raise RecipeError(f"{recipe.path}:1: {err}") from None
        planned[recipe.name] = (recipe, configs)
    command = _command(targets, tier, seeds, extra)
    measured: list[tuple[Recipe, dict[str, dict[str, Any]]]] = []
    durations: dict[str, float] = {}
    try:
        with preemption.stop_on_signals(), phase("regress", len(planned), unit="recipes") as progress:
            for number, (recipe, configs) in enumerate(planned.values(), 1):
                progress.describe(f"regress: recipe {number}/{len(planned)} {recipe.name}")
                started = time.perf_counter()
                measured.append((recipe, _run_recipe(recipe, configs, out)))
                durations[recipe.name] = time.perf_counter() - started
                progress.advance()
    except preemption.RunInterrupted as err:
        _write_reports(out, measured, durations, tier, command, interrupted=str(err))
        again = _command(targets, tier, seeds, extra, out)
        err_console.print(
            f"interrupted: {err}; {len(measured)}/{len(planned)} recipe(s) finished, their results in "
            f"{out / 'regress.json'}; continue with: {again}  (finished runs are skipped)",
            soft_wrap=True,
        )
        sys.exit(err.exit_code)
    verdicts = _write_reports(out, measured, durations, tier, command)
    bad = [v for v in verdicts if v.status in ("fail", "error")]
    for v in bad:
        console.print(styled(v.status.upper(), "red", f" {v.recipe.name}: {v.message}"), soft_wrap=True)
    for name, message in {v.recipe.name: v.message for v in verdicts if v.status == "skipped"}.items():
        console.print(styled("SKIPPED", "yellow", f" {name}: {message}"), soft_wrap=True)
    return 1 if bad else 0


def _command(
    targets: list[Path], tier: str, seeds: list[int] | None, extra: list[str], out: Path | None = None
) -> str:
    """The command line that reruns this selection (into ``out``, when given)."""
    args = [*map(str, targets), "--tier", tier, *(["--seeds", *map(str, seeds)] if seeds else [])]
    args += ["--out", str(out)] if out is not None else []
    return shlex.join(["kdrun", "regress", *args, *(["--", *extra] if extra else [])])


def _write_reports(
    out: Path,
    measured: list[tuple[Recipe, dict[str, dict[str, Any]]]],
    durations: dict[str, float],
    tier: str,
    command: str,
    interrupted: str | None = None,
) -> list[Verdict]:
    """The verdict table, regress.json, junit.xml and results.md of the recipes that finished."""
    verdicts = [v for recipe, runs in measured for v in check(recipe, list(runs.values()))]
    console.print(verdict_table(verdicts))
    summary = _summary(verdicts, durations, tier)
    if interrupted is not None:
        summary |= {"status": "interrupted", "interrupted": interrupted}
    write_json_atomic(out / "regress.json", summary)
    write_junit(out / "junit.xml", verdicts, durations)
    write_results_markdown(out / "results.md", measured, command)
    console.print(f"regress: {out / 'regress.json'}, {out / 'junit.xml'}, {out / 'results.md'}")
    return verdicts


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{mean:.4f}{spread} (n={len(values)})"


def _margin(v: Verdict) -> str:
    """``+0.0040 (+1.9σ)``: the margin, and in noise units where the std is known."""
    if v.measured is None:
        return "-"
    units = v.margin_units
    return f"{v.expectation.margin(v.measured):+.4f}" + ("" if units is None else f" ({units:+.1f}σ)")


def verdict_table(verdicts: list[Verdict]) -> Table:
    table = Table(title="kdrun regress")
    columns = (
        "recipe",
        "tier",
        "expectation",
        "measured",
        "per seed: mean ± std",
        "margin",
        "verdict",
        "published",
    )
    for column in columns:
        table.add_column(column, justify="right" if column in ("measured", "margin") else "left")
    for v in verdicts:
        colour = {"pass": "green", "fail": "red", "error": "red", "skipped": "yellow"}[v.status]
        table.add_row(
            v.recipe.name,
            v.recipe.tier,
            str(v.expectation),
            "-" if v.measured is None else f"{v.measured:.4f}",
            _fmt(v.values),
            _margin(v),
            Text(v.status, style=colour),
            str(v.recipe.published.get("value", "-")),
        )
    return table


def _summary(verdicts: list[Verdict], durations: dict[str, float], tier: str) -> dict[str, Any]:
    recipes: dict[str, Any] = {}
    for v in verdicts:
        entry = recipes.setdefault(
            v.recipe.name,
            {
                "path": str(v.recipe.path),
                "tier": v.recipe.tier,
                "description": v.recipe.description,
                "seeds": v.recipe.seeds,
                "published": v.recipe.published,
                "duration_s": round(durations[v.recipe.name], 1),
                "status": "pass",
                "checks": [],
            },
        )
        entry["checks"].append(
            {
                "expectation": str(v.expectation),
                "line": v.expectation.line,
                "values": v.values,
                "measured": v.measured,
                "margin": None if v.measured is None else v.expectation.margin(v.measured),
                "noise_unit": v.unit,
                "noise_from": v.unit_source or None,
                "margin_units": v.margin_units,
                "from_reference_units": v.from_reference,
                "status": v.status,
                "message": v.message,
            }
        )
        if v.status != "pass":
            entry["status"] = v.status if entry["status"] == "pass" else entry["status"]
    statuses = {r["status"] for r in recipes.values()}
    status = "fail" if statuses & {"fail", "error"} else "skipped" if "skipped" in statuses else "pass"
    skipped = sorted(name for name, r in recipes.items() if r["status"] == "skipped")
    return {"status": status, "tier": tier, "recipes": recipes, "skipped": skipped}


def write_junit(path: Path, verdicts: list[Verdict], durations: dict[str, float]) -> None:
    """One ``testcase`` per expectation; ``failure`` for a regression, ``error`` for a broken run."""
    suite = ET.Element(
        "testsuite",
        name="kdrun-regress",
        tests=str(len(verdicts)),
        failures=str(sum(v.status == "fail" for v in verdicts)),
        errors=str(sum(v.status == "error" for v in verdicts)),
        skipped=str(sum(v.status == "skipped" for v in verdicts)),
        time=f"{sum(durations.values()):.1f}",
    )
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", classname=f"recipes.{v.recipe.name}", name=str(v.expectation))
        if v.status != "pass":
            kind = {"fail": "failure", "skipped": "skipped"}.get(v.status, "error")
            ET.SubElement(case, kind, message=v.message)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    write_atomic(path, ET.tostring(root, encoding="unicode") + "\n")
