"""`kdrun runs`: find runs under a folder, filter them by config, compare a few side by side."""

import json
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from omegaconf import ListConfig
from rich.table import Table

from kdrun.config.roles import user_overrides
from kdrun.config.user_yaml import YamlLimitError, load_config
from kdrun.console import plain
from kdrun.errors import KdrunConfigError

# Short names a user types for the keys they filter on most.
ALIASES = {
    "teacher": "config.teacher.name",
    "student": "config.student.name",
    "strategy": "config.strategy.name",
    "dataset": "config.dataset.name",
    "T": "config.T",
    "alpha": "config.alpha",
    "epochs": "config.student.epochs",
    "seed": "config.seed",
    "status": "status",
}
# Config keys that say where a run wrote, not what it ran.
NOT_SETTINGS = ("paths.", "resume")
# Root keys a group interpolates (student.epochs: ${epochs}): compared once, under the group's key.
COPIES = ("epochs",)
# The figures `--compare` puts side by side: (label, results.json path, scale, signed).
METRICS = (
    ("teacher top-1 %", "teacher.top1", 100, False),
    ("scratch top-1 %", "baseline.top1", 100, False),
    ("student top-1 %", "student.top1", 100, False),
    ("KD gain (pts)", "deltas.kd_gain_top1", 100, True),
    ("KD gain test-set SE (pts)", "deltas.kd_gain_top1_se", 100, False),
    ("gap to teacher (pts)", "deltas.gap_to_teacher_top1", 100, True),
    ("student params", "student.params", 1, False),
    ("student ms @1", "student.latency_ms.batch1", 1, False),
    ("duration s", "duration_s", 1, False),
)


def find(root: Path) -> list[dict[str, Any]]:
    """Every readable results.json under ``root`` (the cache excluded), oldest first."""
    if not root.exists():
        raise KdrunConfigError("DIR", str(root), "does not exist")
    paths = (
        [root / "results.json"] if (root / "results.json").is_file() else sorted(root.rglob("results.json"))
    )
    runs = []
    for path in paths:
        if "cache" in path.relative_to(root).parts:
            continue
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(results, dict) and "status" in results and "config" in results:
            runs.append({**results, "run_dir": str(path.parent), "overrides": _overrides(path.parent)})
    return sorted(runs, key=lambda r: (str(r.get("started_at", "")), r["run_dir"]))


def _overrides(run_dir: Path) -> list[str]:
    """What the command line changed from the defaults (Hydra's record of it), minus bookkeeping."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        stored = load_config(path, "run folder")  # a YAML bomb is refused (YamlLimitError), named
    except YamlLimitError:
        raise
    except KdrunConfigError:  # a broken file: show none rather than fail the listing
        return []
    overrides = [str(o) for o in stored] if isinstance(stored, ListConfig) else []
    shown = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", *NOT_SETTINGS))]
    return user_overrides(shown)  # model@teacher=resnet50 as typed: teacher=resnet50


def value(run: dict[str, Any], dotted: str) -> Any:
    """``run['a']['b']`` for ``a.b``; None where the path does not exist."""
    node: Any = run
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _same(actual: Any, wanted: str) -> bool:
    if actual is None:
        return wanted.lower() in ("null", "none")
    if isinstance(actual, bool):
        return str(actual).lower() == wanted.lower()
    if isinstance(actual, int | float):
        try:
            return float(actual) == float(wanted)
        except ValueError:
            return False
    return str(actual) == wanted


def select(runs: list[dict[str, Any]], filters: list[str]) -> list[dict[str, Any]]:
    """The runs matching every ``key=value``: an alias, a config key (``optim.lr``), or a results key."""
    parsed = []
    for item in filters:
        key, sep, wanted = item.partition("=")
        if not sep or not key:
            raise KdrunConfigError("--filter", item, "key=value, e.g. T=4, teacher=cnn, alpha=0.9, status=ok")
        paths = [ALIASES[key]] if key in ALIASES else [f"config.{key}", key]
        if runs and key not in ALIASES and all(value(run, p) is None for run in runs for p in paths):
            _unknown(key, runs, item)
        parsed.append((paths, wanted))
    return [
        run
        for run in runs
        if all(
            any(_same(value(run, p), wanted) for p in paths if value(run, p) is not None)
            or (wanted.lower() in ("null", "none") and all(value(run, p) is None for p in paths))
            for paths, wanted in parsed
        )
    ]


def _unknown(key: str, runs: list[dict[str, Any]], item: str) -> None:
    """A filter key no run has (``alpah=0.5``) matches nothing silently: refuse it, closest first."""
    known = {
        *ALIASES,
        *(k for run in runs for k in flat_config(run["config"]) if not k.startswith(NOT_SETTINGS)),
    }
    close = get_close_matches(key, sorted(known), n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise KdrunConfigError(
        "--filter", item, f"no run has a key {key!r}; {hint}keys: {', '.join(ALIASES)} or a config key"
    )


def _pct(x: Any, signed: bool = False) -> str:
    if not isinstance(x, int | float):
        return "-"
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def runs_table(runs: list[dict[str, Any]], title: str) -> Table:
    """One line per run: when, status, teacher → student, strategy, overrides, top-1, gain, folder."""
    table = Table(title=plain(title))
    for column in ("started (UTC)", "status", "teacher → student", "strategy", "overrides"):
        table.add_column(column)
    table.add_column("top-1 %", justify="right")
    table.add_column("gain (pts)", justify="right")
    # A folder is copied whole: the other columns give way before it wraps mid-name.
    table.add_column("run dir", no_wrap=True, min_width=max((len(r["run_dir"]) for r in runs), default=7))
    for run in runs:
        cfg = run["config"]
        cells = (
            str(run.get("started_at", "-")).replace("T", " ").split("+")[0],
            run["status"],
            f"{value(cfg, 'teacher.name') or '-'} → {value(cfg, 'student.name') or '-'}",
            str(value(cfg, "strategy.name") or "-"),
            " ".join(map(str, run["overrides"])) or "(defaults)",
            _pct(value(run, "student.top1")),
            _pct(value(run, "deltas.kd_gain_top1"), signed=True),
            run["run_dir"],
        )
        table.add_row(*map(plain, cells))
    return table


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'T': 4.0, 'optim.lr': 0.1, ...}``: every leaf of the resolved config, lists as their text."""
    out: dict[str, Any] = {}
    for key, item in config.items():
        if isinstance(item, dict) and item:
            out |= flat_config(item, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = item
    return out


def differing_keys(runs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The config keys whose values are not the same in every run (paths left out)."""
    flats = [flat_config(run["config"]) for run in runs]
    keys = sorted(set().union(*flats))
    out = {}
    for key in keys:
        if key.startswith(NOT_SETTINGS) or key in COPIES:
            continue
        values = [flat.get(key) for flat in flats]
        texts = [json.dumps(_number_as_float(v), sort_keys=True) for v in values]
        if any(text != texts[0] for text in texts):
            out[key] = values
    return out


def _number_as_float(item: Any) -> Any:
    """``T: 4`` and ``T: 4.0`` are one setting (YAML and the command line spell numbers both ways)."""
    if isinstance(item, bool) or item is None:
        return item
    if isinstance(item, int | float):
        return float(item)
    if isinstance(item, list):
        return [_number_as_float(x) for x in item]
    if isinstance(item, dict):
        return {k: _number_as_float(x) for k, x in item.items()}
    return item


def compare_table(runs: list[dict[str, Any]]) -> Table:
    """The config keys that differ, then the metrics, one column per run."""
    table = Table(title="kdrun runs --compare")
    table.add_column("")
    for i, run in enumerate(runs, 1):
        table.add_column(plain(f"{i}: {Path(run['run_dir']).name}"), justify="right", overflow="fold")
    differing = differing_keys(runs)
    for key, values in differing.items():
        table.add_row(plain(key), *("-" if v is None else plain(v) for v in values))
    if not differing:
        table.add_row("(config)", *["same"] * len(runs))
    table.add_section()
    table.add_row("status", *(plain(run["status"]) for run in runs))
    for label, path, scale, signed in METRICS:
        cells = []
        for run in runs:
            x = value(run, path)
            if not isinstance(x, int | float):
                cells.append("-")
            elif scale == 100:
                cells.append(_pct(x, signed))
            else:
                cells.append(f"{x:g}")
        table.add_row(label, *cells)
    return table


def load_run(path: Path) -> dict[str, Any]:
    """One run for ``--compare``: its folder or its results.json."""
    folder = path.parent if path.name == "results.json" else path
    found = find(folder) if (folder / "results.json").is_file() else []
    if not found:
        raise KdrunConfigError("RUN", str(path), "is not a run folder (no readable results.json)")
    return found[0]
