"""``results.md`` of a regress run: each recipe's measured numbers next to the figure it echoes."""

import json
import statistics
from pathlib import Path
from typing import Any

from kdrun.files import write_atomic
from kdrun.regress.recipe import Recipe
from kdrun.report.summary import md_cell


def _pm(values: list[float], scale: float = 100.0, signed: bool = False) -> str:
    if not values:
        return "–"
    mean = scale * statistics.fmean(values)
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return f"{text} ± {scale * statistics.stdev(values):.2f}" if len(values) > 1 else text


def _best_point(runs: dict[str, dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """For a sweep: the grid point with the highest mean KD gain, and its runs."""
    points: dict[str, list[dict[str, Any]]] = {}
    for label, results in runs.items():
        points.setdefault(label.rsplit("/", 1)[0], []).append(results)
    return max(points.items(), key=lambda kv: statistics.fmean(r["deltas"]["kd_gain_top1"] for r in kv[1]))


def results_markdown(recipes: list[tuple[Recipe, dict[str, dict[str, Any]]]], command: str) -> str:
    """One table row per recipe: teacher, scratch, distilled (top-1 %, mean ± std over seeds), gain."""
    lines = [
        f"Measured with `{command}`; top-1 % on the fixed 1,000-image test split, mean ± std over seeds.",
        "",
        "| recipe | tier | seeds | teacher | scratch student | distilled student | KD gain (pts) "
        "| published |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe, runs in recipes:
        ok = {label: r for label, r in runs.items() if r.get("status") == "ok"}
        skipped = [r["reason"] for r in runs.values() if r.get("status") == "skipped"]
        if skipped:
            lines.append(f"| {recipe.name} | {recipe.tier} | – | skipped: {md_cell(skipped[0])} | | | | |")
            continue
        if not ok:
            lines.append(f"| {recipe.name} | {recipe.tier} | – | failed | | | | |")
            continue
        name = recipe.name
        if recipe.sweep:
            point, chosen = _best_point(ok)
            name += f" (best cell: {point})"
        else:
            chosen = list(ok.values())
        teachers = [r["teacher"]["top1"] for r in chosen if r.get("teacher")]
        published = recipe.published
        cite = f"{published.get('source', '')}: {published.get('value', '')}" if published else ""
        scratch, student = ([r[role]["top1"] for r in chosen] for role in ("baseline", "student"))
        gain = [r["deltas"]["kd_gain_top1"] for r in chosen]
        lines.append(
            f"| {name} | {recipe.tier} | {len(chosen)} | {_pm(teachers)} | {_pm(scratch)} | {_pm(student)} | "
            f"{_pm(gain, signed=True)} | {cite} |"
        )
    return "\n".join(lines) + "\n"


def load_runs(out: Path, recipe: Recipe) -> dict[str, dict[str, Any]]:
    """The results.json of each run of ``recipe`` under a regress output folder, by run label."""
    folder = out / recipe.name
    return {
        str(path.parent.relative_to(folder)): json.loads(path.read_text())
        for path in sorted(folder.rglob("results.json"))
    }


def write_results_markdown(path: Path, recipes: list, command: str) -> None:
    write_atomic(path, results_markdown(recipes, command))
