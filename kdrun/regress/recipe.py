"""A recipe: a Hydra config of group ``recipe`` (``# @package _global_``) plus a ``regress`` block.

```yaml
regress:
  description: one line: what the recipe shows
  tier: fast                       # fast (CI) | full (make regress-full) | gpu (only --tier gpu)
  seeds: [0, 1, 2]
  sweep: {T: [1, 4], alpha: [0.5, 0.9]}   # optional: a grid of overrides, each point over the seeds
  expect:                          # "[mean|min|max|std](<results.json path>) <op> <number>",
                                   # aggregated over every run (all seeds, all sweep points)
    - mean(deltas.kd_gain_top1) >= 0.005
    - min(student.top1) >= 0.93
  published: {source: Hinton 2015, setting: ..., value: ...}   # optional, for docs/results.md
```

Every problem is reported as ``<file>:<line>: <what>``, before anything runs.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TIERS = ("fast", "full", "gpu")  # gpu: hours on one GPU; only `--tier gpu` runs them
REGRESS_KEYS = ("description", "tier", "seeds", "sweep", "expect", "published")
AGGREGATES = ("mean", "min", "max", "std")
OPS = (">=", "<=", ">", "<")
# First component of a metric path: the sections of results.json that hold numbers.
RESULT_SECTIONS = (
    "teacher",
    "baseline",
    "student",
    "deltas",
    "extra_models",
    "diagnostics",
    "timings_s",
    "duration_s",
)
_EXPECT = re.compile(
    r"^\s*(?:(?P<agg>[a-z]+)\((?P<path1>[\w.\[\]-]+)\)|(?P<path2>[\w.\[\]-]+))\s*"
    r"(?P<op>>=|<=|>|<)\s*(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$"
)


class RecipeError(ValueError):
    """A malformed recipe: the message starts with ``<file>:<line>:``."""


@dataclass
class Expectation:
    """``aggregate(metric) op value`` over the recipe's seeds, from ``line`` of the recipe file."""

    aggregate: str
    metric: str
    op: str
    value: float
    line: int

    def __str__(self) -> str:
        return f"{self.aggregate}({self.metric}) {self.op} {self.value:g}"

    def holds(self, measured: float) -> bool:
        return {
            ">=": measured >= self.value,
            "<=": measured <= self.value,
            ">": measured > self.value,
            "<": measured < self.value,
        }[self.op]

    def margin(self, measured: float) -> float:
        """How far inside the bound ``measured`` is (negative: outside)."""
        return measured - self.value if self.op in (">=", ">") else self.value - measured


@dataclass
class Recipe:
    name: str
    path: Path
    description: str
    tier: str
    seeds: list[int]
    expect: list[Expectation]
    published: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # dotted key -> line, for later errors
    group_overrides: list[str] = field(default_factory=list)  # `override /student: cnn` -> student=cnn


def _lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """Dotted key of every mapping entry -> its 1-based line in the file."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            dotted = f"{prefix}{key.value}"
            out[dotted] = key.start_mark.line + 1
            out.update(_lines(value, dotted + "."))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[f"{prefix.rstrip('.')}[{i}]"] = item.start_mark.line + 1
            out.update(_lines(item, f"{prefix.rstrip('.')}[{i}]."))
    return out


def load_recipe(path: Path) -> Recipe:
    """Parse and check a recipe file's ``regress`` block; ``RecipeError`` names file and line."""
    path = Path(path)

    def error(line: int, message: str) -> RecipeError:
        return RecipeError(f"{path}:{line}: {message}")

    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise error(mark.line + 1 if mark else 1, f"not valid YAML: {getattr(err, 'problem', err)}") from None
    if not text.lstrip().startswith("# @package _global_"):
        raise error(1, "a recipe starts with `# @package _global_` (it sets root keys)")
    lines = _lines(node) if node is not None else {}
    block = data.get("regress")
    if not isinstance(block, dict):
        raise error(lines.get("regress", 1), "missing `regress:` block (description, tier, seeds, expect)")
    for key in block:
        if key not in REGRESS_KEYS:
            raise error(
                lines[f"regress.{key}"], f"unknown key regress.{key}; allowed: {', '.join(REGRESS_KEYS)}"
            )
    for key in ("description", "tier", "seeds", "expect"):
        if key not in block:
            raise error(lines["regress"], f"regress.{key} is required")
    if block["tier"] not in TIERS:
        raise error(lines["regress.tier"], f"regress.tier={block['tier']!r}; allowed: {', '.join(TIERS)}")
    seeds = block["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise error(lines["regress.seeds"], f"regress.seeds={seeds!r}: a non-empty list of integers >= 0")
    sweep = block.get("sweep") or {}
    if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
        raise error(
            lines.get("regress.sweep", lines["regress"]),
            "regress.sweep: a mapping of override key -> "
            "non-empty list of values, e.g. {T: [1, 4], alpha: [0.5, 0.9]}",
        )
    if not isinstance(block["expect"], list) or not block["expect"]:
        raise error(lines["regress.expect"], "regress.expect: a non-empty list of `agg(metric) op number`")
    expect = []
    for i, text_line in enumerate(block["expect"]):
        line = lines[f"regress.expect[{i}]"]
        match = _EXPECT.match(str(text_line)) if isinstance(text_line, str) else None
        if match is None:
            raise error(
                line,
                f"malformed expectation {text_line!r}; write e.g. `mean(student.top1) >= 0.9` "
                f"(aggregates: {', '.join(AGGREGATES)}; ops: {' '.join(OPS)})",
            )
        aggregate = match["agg"] or "mean"
        metric = match["path1"] or match["path2"]
        if aggregate not in AGGREGATES:
            raise error(line, f"unknown aggregate {aggregate!r}; allowed: {', '.join(AGGREGATES)}")
        if metric.split(".")[0] not in RESULT_SECTIONS:
            raise error(
                line,
                f"metric {metric!r} is not in results.json; it starts with one of: "
                f"{', '.join(RESULT_SECTIONS)}",
            )
        if aggregate == "std" and len(seeds) < 2:
            raise error(line, "std(...) needs at least 2 seeds")
        expect.append(Expectation(aggregate, metric, match["op"], float(match["value"]), line))
    overrides = []
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                if str(key).startswith("override /"):
                    overrides.append(f"{key.removeprefix('override /')}={value}")
    return Recipe(
        name=path.stem,
        path=path,
        description=str(block["description"]),
        tier=block["tier"],
        seeds=list(seeds),
        expect=expect,
        published=block.get("published") or {},
        sweep=sweep,
        lines=lines,
        group_overrides=overrides,
    )


def find_recipes(targets: list[Path]) -> list[Path]:
    """Recipe files from files and folders (``recipes/`` -> every ``*.yaml`` in it)."""
    found: list[Path] = []
    for target in targets:
        if target.is_dir():
            found += sorted(target.glob("*.yaml"))
        elif target.is_file():
            found.append(target)
        else:
            raise RecipeError(f"{target}: no such recipe file or folder")
    if not found:
        raise RecipeError(f"{', '.join(map(str, targets))}: no recipe (*.yaml) found")
    return found
