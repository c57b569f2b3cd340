"""`kdrun report DIR`: every results.json under DIR -> table, summary.csv/md, T x alpha heatmap."""

import csv
import html
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdrun.files import atomic_open, atomic_path, write_atomic
from kdrun.report.cells import csv_cell, md_cell, number_text

# The columns every report shows. An experiment point is the whole resolved config but the keys
# below: runs that differ in anything else (a learning rate, a data limit, a strategy key) are
# different points, never averaged into one row.
POINT_KEYS = ("strategy", "teacher", "student", "dataset", "T", "alpha", "epochs")
NOT_POINT = ("seed", "student.seed", "resume")  # the seed is the spread a row shows
NOT_POINT_PREFIXES = ("paths.", "logger.")  # where outputs and logs go
# Config keys the POINT_KEYS columns already show.
SHOWN = ("strategy.name", "teacher.name", "student.name", "dataset.name", "kd.T", "kd.alpha", "T", "alpha")
SHOWN += ("epochs", "student.epochs")


@dataclass
class Point:
    """One experiment point aggregated over its seeds."""

    key: dict[str, Any]
    config: dict[str, str] = field(default_factory=dict)  # dotted key -> JSON of the value
    runs: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [run[name] for run in self.runs if run.get(name) is not None]

    def mean_std(self, name: str) -> tuple[float | None, float | None]:
        values = self.values(name)
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def find_runs(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Flat records of every readable results.json under ``root``, and a warning per unreadable one."""
    records, warnings = [], []
    for path in sorted(root.rglob("results.json")):
        try:
            results = json.loads(path.read_text())
            records.append(flatten(results, path.parent))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            warnings.append(f"skipped {path}: not a kdrun results.json ({type(err).__name__}: {err})")
    return records, warnings


def flatten(results: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The fields a report shows, from one results.json (ok or failed)."""
    cfg = results["config"]
    record = {
        "run_dir": str(run_dir),
        "status": results["status"],
        "error": results.get("error"),
        "strategy": cfg["strategy"]["name"],
        "teacher": cfg["teacher"]["name"],
        "student": cfg["student"]["name"],
        "dataset": cfg["dataset"]["name"],
        "T": cfg["T"] if "T" in cfg else cfg["kd"]["T"],  # older results.json: kd.T, kd.alpha
        "alpha": cfg["alpha"] if "alpha" in cfg else cfg["kd"]["alpha"],
        "epochs": cfg["student"]["epochs"],
        "seed": cfg["seed"],
        "point": point_config(cfg),
    }
    if results["status"] == "ok":
        record |= {
            "top1": results["student"]["top1"],
            "gain": results["deltas"]["kd_gain_top1"],
            "baseline_top1": results["baseline"]["top1"],
            "teacher_top1": (results["teacher"] or {}).get("top1"),  # None: no teacher model
            "params": results["student"]["params"],
            "latency_ms": results["student"]["latency_ms"].get("batch1"),
        }
    return record


def point_config(cfg: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved config as ``{dotted key: JSON value}``, without the keys that do not make a
    run another experiment (the seed, output paths, loggers)."""
    out: dict[str, str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if name in NOT_POINT or name.startswith(NOT_POINT_PREFIXES):
            continue
        if isinstance(value, dict) and value:
            out |= point_config(value, f"{name}.")
        else:
            out[name] = json.dumps(value, sort_keys=True)
    return out


def aggregate(records: list[dict[str, Any]]) -> list[Point]:
    """Group runs by experiment point (the whole config but the seed and paths), in a stable order."""
    points: dict[tuple, Point] = {}
    for record in records:
        key = {k: record[k] for k in POINT_KEYS}
        config = record["point"]
        point = points.setdefault(tuple(sorted(config.items())), Point(key, config))
        (point.runs if record["status"] == "ok" else point.failed).append(record)
    varying = varying_keys(list(points.values()))
    return sorted(
        points.values(),
        key=lambda p: tuple(_sortable(v) for v in [*p.key.values(), *(p.config.get(k) for k in varying)]),
    )


def varying_keys(points: list[Point]) -> list[str]:
    """Config keys whose value differs between the points, besides those the columns show."""
    keys = sorted({k for point in points for k in point.config} - set(SHOWN))
    return [k for k in keys if len({point.config.get(k) for point in points}) > 1]


def duplicate_seeds(point: Point) -> list[int]:
    """Seeds that appear more than once among a point's runs (the same run counted twice)."""
    seeds = [run["seed"] for run in point.runs + point.failed]
    return sorted({seed for seed in seeds if seeds.count(seed) > 1})


def _value(encoded: str | None) -> Any:
    return None if encoded is None else json.loads(encoded)


def _sortable(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def _fmt(mean: float | None, std: float | None, scale: float = 100.0, signed: bool = False) -> str:
    if mean is None:
        return "-"
    text = f"{scale * mean:+.2f}" if signed else f"{scale * mean:.2f}"
    return text if std is None else f"{text} ± {scale * std:.2f}"


def rows(points: list[Point]) -> list[dict[str, Any]]:
    """One display/CSV row per point: the columns, a column per config key that varies, means, stds, n."""
    out = []
    varying = varying_keys(points)
    for point in points:
        top1, top1_std = point.mean_std("top1")
        gain, gain_std = point.mean_std("gain")
        latency, _ = point.mean_std("latency_ms")
        params = point.values("params")
        out.append(
            {
                **point.key,
                **{k: _value(point.config.get(k)) for k in varying},
                "n": len(point.runs),
                "failed": len(point.failed),
                "seeds": " ".join(str(seed) for seed in sorted(r["seed"] for r in point.runs)),
                "top1_mean": top1,
                "top1_std": top1_std,
                "gain_mean": gain,
                "gain_std": gain_std,
                "baseline_top1_mean": point.mean_std("baseline_top1")[0],
                "teacher_top1_mean": point.mean_std("teacher_top1")[0],
                "params": params[0] if params else None,
                "latency_ms_batch1": latency,
            }
        )
    return out


# summary.csv speaks the tables' units: accuracies in percent, gains in points (of percent).
CSV_UNITS = {
    "top1_mean": "top1_pct_mean",
    "top1_std": "top1_pct_std",
    "gain_mean": "gain_pts_mean",
    "gain_std": "gain_pts_std",
    "baseline_top1_mean": "baseline_top1_pct_mean",
    "teacher_top1_mean": "teacher_top1_pct_mean",
}


def in_units(row: dict[str, Any]) -> dict[str, Any]:
    """A summary row with fractions as percent and points, under names that say so."""
    return {
        CSV_UNITS.get(k, k): (round(100 * v, 4) if k in CSV_UNITS and v is not None else v)
        for k, v in row.items()
    }


def write_csv(table: list[dict[str, Any]], path: Path) -> None:
    converted = [{k: csv_cell(v) for k, v in in_units(row).items()} for row in table]
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(converted[0]))
        writer.writeheader()
        writer.writerows(converted)


def extra_columns(table: list[dict[str, Any]]) -> list[str]:
    """The varying config keys among a table's columns (the dotted ones)."""
    return [k for k in table[0] if "." in k] if table else []


def write_markdown(table: list[dict[str, Any]], path: Path, note: str) -> None:
    extra = extra_columns(table)
    header = "| strategy | teacher | student | T | α | " + "".join(f"{md_cell(k)} | " for k in extra)
    header += "seeds | n | top-1 % | gain (pts) | params | ms @1 | failed |"
    lines = [header, "|---|---|---|---:|---:|" + "---|" * len(extra) + "---|---:|---:|---:|---:|---:|---:|"]
    for row in table:
        latency = row["latency_ms_batch1"]
        lines.append(
            f"| {md_cell(row['strategy'])} | {md_cell(row['teacher'])} | {md_cell(row['student'])} "
            f"| {md_cell(number_text(row['T']))} | {md_cell(number_text(row['alpha']))} "
            + "".join(f"| {md_cell(row[k])} " for k in extra)
            + f"| {row['seeds'] or '-'} | {row['n']} | {_fmt(row['top1_mean'], row['top1_std'])} "
            f"| {_fmt(row['gain_mean'], row['gain_std'], signed=True)} | {row['params'] or '-'} "
            f"| {'-' if latency is None else f'{latency:.3f}'} | {row['failed']} |"
        )
    write_atomic(path, "\n".join([*lines, "", html.escape(note, quote=False), ""]))


def grid_rows(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a T x alpha grid can place: numbers for both (a failed point may hold ``T=abc``)."""

    def number(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool)

    return [row for row in table if number(row["T"]) and number(row["alpha"])]


def is_temperature_sweep(table: list[dict[str, Any]]) -> bool:
    """True when the runs vary T or alpha (and nothing else that would mix in one cell)."""
    table = grid_rows(table)
    keys = [*POINT_KEYS, *extra_columns(table)]
    others = {tuple(json.dumps(row[k]) for k in keys if k not in ("T", "alpha")) for row in table}
    grid = {(row["T"], row["alpha"]) for row in table}
    return len(others) == 1 and len(grid) > 1


def heatmap(table: list[dict[str, Any]], path: Path, metric: str) -> None:
    """One cell per (T, alpha): mean over seeds (std below); baseline and teacher in the title."""
    import matplotlib

    table = grid_rows(table)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    temps = sorted({row["T"] for row in table})
    alphas = sorted({row["alpha"] for row in table})
    grid = np.full((len(temps), len(alphas)), np.nan)
    cells = {(row["T"], row["alpha"]): row for row in table}
    for (t, a), row in cells.items():
        if row[f"{metric}_mean"] is not None:
            grid[temps.index(t), alphas.index(a)] = 100 * row[f"{metric}_mean"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(alphas), 1.4 + 0.9 * len(temps)))
    finite = grid[np.isfinite(grid)]
    if metric == "gain":
        bound = max(float(np.abs(finite).max()) if finite.size else 1.0, 0.1)
        image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound)
    else:
        image = ax.imshow(grid, cmap="viridis")
    for (t, a), row in cells.items():
        i, j = temps.index(t), alphas.index(a)
        mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
        text = "failed" if mean is None else f"{100 * mean:{'+' if metric == 'gain' else ''}.2f}"
        if std is not None:
            text += f"\n±{100 * std:.2f}"
        text += f"\nn={row['n']}"
        shade = float(image.norm(grid[i, j])) if np.isfinite(grid[i, j]) else 0.5
        dark = abs(shade - 0.5) > 0.3 if metric == "gain" else shade < 0.5
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_yticks(range(len(temps)), [f"{t:g}" for t in temps])
    ax.set_xlabel("alpha (weight of the soft term)")
    ax.set_ylabel("T (temperature)")
    label = "gain over scratch student (pts)" if metric == "gain" else "distilled student top-1 (%)"
    fig.colorbar(image, ax=ax, label=label)
    first = table[0]
    bases = [r["baseline_top1_mean"] for r in table if r["baseline_top1_mean"] is not None]
    base = f"{100 * statistics.fmean(bases):.2f}%" if bases else "none"
    teachers = [r["teacher_top1_mean"] for r in table if r["teacher_top1_mean"] is not None]
    teach = f"{100 * statistics.fmean(teachers):.2f}%" if teachers else "none"
    ax.set_title(
        f"{first['teacher']} → {first['student']} on {first['dataset']}\n"
        f"scratch student {base}, teacher {teach}",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
