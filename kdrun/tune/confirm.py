"""After the search: the best point re-run by ``kdrun train`` on each seed and scored once on the
test split (the only use of the test split), beside the configuration the search started from;
and the best point written as a recipe ``kdrun regress`` runs."""

import statistics
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from rich.table import Table

from kdrun.config.roles import hydra_overrides
from kdrun.console import console
from kdrun.files import write_atomic
from kdrun.regress.bounds import Expectation, Reference, allowed_bound
from kdrun.runtime.preemption import previous_point
from kdrun.train.pipeline import train
from kdrun.tune.search import Tuning

CONFIRM = "confirm"  # <study folder>/confirm/<best|start>/seed<k>/: kdrun train's run folders
_NONE = object()
INLINED_GROUPS = ("debug",)  # _global_ groups listed after `recipe` in train.yaml's defaults
METRICS = ("student.top1", "baseline.top1", "deltas.kd_gain_top1", "student.val_top1")


def confirm(tuning: Tuning, best: dict[str, Any], seeds: list[int], compare: bool) -> dict[str, Any]:
    """``kdrun train`` at the best point (and at the start point) on each seed: per metric, the
    values, their mean and std. A run that finished before with the same config is read back."""
    points = {"best": best, **({"start": {}} if compare else {})}
    out: dict[str, Any] = {}
    for label, point in points.items():
        runs = []
        for seed in seeds:
            run_dir = tuning.folder / CONFIRM / label / f"seed{seed}"
            cfg = tuning.config(point, [f"seed={seed}"])
            run_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
            earlier = previous_point(run_dir, OmegaConf.to_container(cfg, resolve=True))
            if earlier is not None and earlier.get("status") == "ok":  # a rerun after a stop
                console.print(f"confirm: {label} point, seed {seed}: done in {run_dir}", markup=False)
                runs.append(earlier)
                continue
            console.print(f"confirm: {label} point, seed {seed}: kdrun train in {run_dir}", markup=False)
            runs.append(train(cfg, run_dir, echo=False))
        out[label] = {"point": point, "seeds": seeds, **{m: _summary(runs, m) for m in METRICS}}
    return out


def _summary(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    values = []
    for run in runs:
        node: Any = run
        for part in metric.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values.append(node)
    numbers = [v for v in values if isinstance(v, int | float)]
    mean = statistics.fmean(numbers) if numbers else None
    std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
    return {"values": values, "mean": mean, "std": std}


def confirm_table(found: dict[str, Any]) -> Table:
    """Test top-1 and the KD gain of each re-run point, mean ± std over its seeds."""
    table = Table(title="test split, once per point and seed (kdrun train)")
    for column in ("point", "seeds", "val top-1 %", "test top-1 %", "scratch %", "KD gain (pts)"):
        table.add_column(column, justify="right" if column != "point" else "left")
    for label, row in found.items():
        point = " ".join(f"{k}={_short(v)}" for k, v in row["point"].items()) or "config as given"
        table.add_row(
            f"{label}: {point}",
            str(len(row["seeds"])),
            _pm(row["student.val_top1"]),
            _pm(row["student.top1"]),
            _pm(row["baseline.top1"]),
            _pm(row["deltas.kd_gain_top1"], signed=True),
        )
    return table


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _pm(summary: dict[str, Any], signed: bool = False) -> str:
    if summary["mean"] is None:
        return "-"
    mean = f"{100 * summary['mean']:+.2f}" if signed else f"{100 * summary['mean']:.2f}"
    return f"{mean} ± {100 * summary['std']:.2f}"


def recipe_path(name: str) -> Path:
    """``--export-recipe NAME``: ``recipes/NAME.yaml``; a name with a folder or ``.yaml`` is a path."""
    path = Path(name)
    if path.suffix != ".yaml" and len(path.parts) == 1:
        path = Path("recipes") / f"{name}.yaml"
    return path


def export_recipe(path: Path, tuning: Tuning, best: dict[str, Any], found: dict[str, Any]) -> None:
    """Write the best point as a recipe: the overrides, the point, the seeds, and a bound on the
    mean test top-1 that the rule of ``kdrun regress`` admits for the measured mean and std."""
    groups, values = _split_overrides([*tuning.overrides, *tuning.space.overrides])
    for key, value in best.items():
        values[key] = value
    measured = found["best"]["student.top1"]
    seeds = found["best"]["seeds"]
    reference = Reference(mean=measured["mean"], std=measured["std"], line=0)
    bound = allowed_bound(Expectation("mean", "student.top1", ">=", 0.0, 0), reference, len(seeds))
    body: dict[str, Any] = {}
    if groups:
        body["defaults"] = [{f"override /{group}": option} for group, option in groups.items()]
    for key, value in values.items():
        node = body
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    body["regress"] = {
        "description": f"the best point of kdrun tune study {tuning.name} ({len(best)} searched keys)",
        "tier": "full",
        "seeds": list(seeds),
        "reference": {"student.top1": {"mean": round(measured["mean"], 4), "std": round(measured["std"], 4)}},
        "expect": [f"mean(student.top1) >= {max(0.0, int(bound * 1000) / 1000):.3f}"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# @package _global_\n# Written by kdrun tune from the study's best trial.\n"
    write_atomic(path, text + yaml.safe_dump(body, sort_keys=False))


def _split_overrides(overrides: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """Overrides as the recipe's group choices (``/strategy: dkd``) and its key values. A group
    that comes after ``recipe`` in train.yaml's defaults (``debug``) cannot be overridden from a
    recipe: its file's keys that the train config has are written instead."""
    from importlib.resources import files

    from kdrun.train.api import compose

    groups: dict[str, str] = {}
    values: dict[str, Any] = {}
    inlined: dict[str, Any] = {}  # below the command line's values, as Hydra merges them
    for override in hydra_overrides(overrides):
        key, value = override.lstrip("+").split("=", 1)
        folder = files("kdrun.conf") / key.split("@")[0]
        if key in INLINED_GROUPS:
            content = yaml.safe_load((folder / f"{value}.yaml").read_text()) or {}
            base = compose()
            found = _dotted({k: v for k, v in content.items() if k != "defaults"})
            inlined |= {
                k: v for k, v in found.items() if OmegaConf.select(base, k, default=_NONE) is not _NONE
            }
        elif folder.is_dir():
            groups[key] = value
        else:
            values[key] = yaml.safe_load(value)
    return groups, inlined | values


def _dotted(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out |= _dotted(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
