"""A recipe: a Hydra config of group ``recipe`` (``# @package _global_``) plus a ``regress`` block.

```yaml
regress:
  description: one line: what the recipe shows
  tier: fast                       # fast (CI) | full (regress-full) | real | gpu (only --tier real/gpu)
  seeds: [0, 1, 2]
  sweep: {T: [1, 4], alpha: [0.5, 0.9]}   # optional: a grid of overrides, each point over the seeds
  reference:                       # optional: measured per-run mean and std of a metric, over
    student.top1: {mean: 0.9413, std: 0.0045}   # seeds and perturbed numerics (docs/results.md)
  expect:                          # "[mean|min|max|std](<results.json path>) <op> <number>",
                                   # aggregated over every run (all seeds, all sweep points)
    - mean(deltas.kd_gain_top1) >= 0.005
    - min(student.top1) >= 0.93
  published: {source: Hinton 2015, setting: ..., value: ...}   # optional, for docs/results.md
```

A metric with a ``reference`` must keep its bounds at a distance from the measured mean that the
measured noise justifies (``allowed_bound``): ``Z`` standard errors of the checked aggregate plus
``SLACK``. A tighter bound is refused when the recipe loads; without a reference the std over the
run's own seeds is the unit of the report.

Every problem is reported as ``<file>:<line>: <what>``, before anything runs.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdrun.config.user_yaml import YamlLimitError, check_text, read_text
from kdrun.errors import KdrunConfigError
from kdrun.regress.bounds import SLACK, Expectation, Reference, Z, allowed_bound

TIERS = ("fast", "full", "real", "gpu")  # real: hours on real data sets (CPU); gpu: hours on one GPU;
# only `--tier real` / `--tier gpu` run them
REGRESS_KEYS = ("description", "tier", "seeds", "sweep", "reference", "expect", "published")
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
    reference: dict[str, Reference] = field(default_factory=dict)  # metric -> measured mean, std
    group_overrides: list[str] = field(default_factory=list)  # `override /model@student: cnn`


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

    data, lines = _parse(path, error)
    block = data.get("regress")
    if not isinstance(block, dict):
        raise error(lines.get("regress", 1), "missing `regress:` block (description, tier, seeds, expect)")
    seeds, sweep = _check_block(block, lines, error)
    reference = _references(block.get("reference"), lines, error)
    if not isinstance(block["expect"], list) or not block["expect"]:
        raise error(lines["regress.expect"], "regress.expect: a non-empty list of `agg(metric) op number`")
    runs = len(seeds) * _points(sweep)
    expect = [
        _expectation(text, lines[f"regress.expect[{i}]"], reference, len(seeds), runs, error)
        for i, text in enumerate(block["expect"])
    ]
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
        reference=reference,
        group_overrides=_group_overrides(data, lines, error),
    )


def _parse(path: Path, error: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """The recipe file's YAML and the line of each dotted key; a recipe must be ``_global_``."""
    try:  # within the size and alias-expansion limits, or one line naming the file
        text = read_text(path, "recipe")
        check_text(text, path, "recipe")
    except YamlLimitError as err:
        raise error(1, err.allowed) from None
    except KdrunConfigError as err:
        if "not valid YAML" not in err.allowed:  # unreadable; YAML errors are said below, with their line
            raise error(1, err.allowed) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise error(mark.line + 1 if mark else 1, f"not valid YAML: {getattr(err, 'problem', err)}") from None
    if not text.lstrip().startswith("# @package _global_"):
        raise error(1, "a recipe starts with `# @package _global_` (it sets root keys)")
    if (twice := _duplicate(node)) is not None:  # YAML would keep the last value without a word
        line, key, first = twice
        raise error(line, f"duplicate key {key!r} (first set on line {first}): set each key once")
    return data, _lines(node) if node is not None else {}


def _duplicate(node: yaml.Node | None, prefix: str = "") -> tuple[int, str, int] | None:
    """The first key set twice in one mapping: (its second line, the dotted key, its first line)."""
    children: list[tuple[str, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else id(key)  # a complex key is unique
            if name in seen:
                return key.start_mark.line + 1, f"{prefix}{key.value}", seen[name]
            seen[name] = key.start_mark.line + 1
            children.append((f"{prefix}{key.value}.", value))
    elif isinstance(node, yaml.SequenceNode):
        children = [(f"{prefix.rstrip('.')}[{i}].", item) for i, item in enumerate(node.value)]
    for child_prefix, child in children:
        if (found := _duplicate(child, child_prefix)) is not None:
            return found
    return None


def _check_block(
    block: dict[str, Any], lines: dict[str, int], error: Any
) -> tuple[list[int], dict[str, list[Any]]]:
    """The ``regress`` block's keys, tier, seeds and sweep checked; the seeds and the sweep."""
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
    return seeds, sweep


def _expectation(
    text: Any, line: int, reference: dict[str, Reference], seeds: int, runs: int, error: Any
) -> Expectation:
    """One ``regress.expect`` entry parsed, its metric checked, and its bound held to the noise
    rule when the metric has a reference (``runs``: seeds x sweep points)."""
    match = _EXPECT.match(str(text)) if isinstance(text, str) else None
    if match is None:
        raise error(
            line,
            f"malformed expectation {text!r}; write e.g. `mean(student.top1) >= 0.9` "
            f"(aggregates: {', '.join(AGGREGATES)}; ops: {' '.join(OPS)})",
        )
    aggregate = match["agg"] or "mean"
    metric = match["path1"] or match["path2"]
    if aggregate not in AGGREGATES:
        raise error(line, f"unknown aggregate {aggregate!r}; allowed: {', '.join(AGGREGATES)}")
    if metric.split(".")[0] not in RESULT_SECTIONS:
        raise error(
            line,
            f"metric {metric!r} is not in results.json; it starts with one of: {', '.join(RESULT_SECTIONS)}",
        )
    if aggregate == "std" and seeds < 2:
        raise error(line, "std(...) needs at least 2 seeds")
    exp = Expectation(aggregate, metric, match["op"], float(match["value"]), line)
    ref = reference.get(metric)
    limit = None if ref is None else allowed_bound(exp, ref, runs)
    if limit is not None and (exp.value > limit + 1e-9 if exp.lower else exp.value < limit - 1e-9):
        raise error(
            line,
            f"{exp}: too tight for the measured noise of {metric} (mean {ref.mean:g}, std "
            f"{ref.std:g}, line {ref.line}); over {runs} run(s) the rule "
            f"admits {'at most' if exp.lower else 'at least'} {limit:.4f} "
            f"(reference mean {'-' if exp.lower else '+'} {Z:g} x noise - {SLACK:g}; docs/results.md)",
        )
    return exp


def _group_overrides(data: dict[str, Any], lines: dict[str, int], error: Any) -> list[str]:
    """The defaults list's ``override /group: choice`` entries as ``group=choice`` overrides."""
    overrides = []
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                group = str(key).removeprefix("override /")
                if group in ("teacher", "student"):  # teacher=/student= are the model group's places
                    hint = f"`{key}: {value}`: write `override /model@{group}: {value}`"
                    raise error(lines.get("defaults", 1), hint)
                if str(key).startswith("override /"):
                    overrides.append(f"{group}={value}")
    return overrides


def _points(sweep: dict[str, list[Any]]) -> int:
    return math.prod(len(values) for values in sweep.values())


def _references(block: Any, lines: dict[str, int], error: Any) -> dict[str, Reference]:
    """``regress.reference``: metric -> {mean: number, std: number >= 0}."""
    if block is None:
        return {}
    where = lines.get("regress.reference", 1)
    if not isinstance(block, dict):
        raise error(where, "regress.reference: a mapping of metric -> {mean: number, std: number}")
    out = {}
    for metric, entry in block.items():
        line = lines.get(f"regress.reference.{metric}", where)
        if str(metric).split(".")[0] not in RESULT_SECTIONS:
            raise error(
                line,
                f"regress.reference: metric {metric!r} is not in results.json; it starts with one "
                f"of: {', '.join(RESULT_SECTIONS)}",
            )
        numbers = isinstance(entry, dict) and set(entry) == {"mean", "std"}
        numbers = numbers and all(type(entry[k]) in (int, float) for k in ("mean", "std"))
        if not numbers or entry["std"] < 0:
            raise error(
                line,
                f"regress.reference.{metric}={entry!r}: write {{mean: <number>, std: <number >= 0>}} "
                "(measured per-run mean and std)",
            )
        out[str(metric)] = Reference(float(entry["mean"]), float(entry["std"]), line)
    return out


def find_recipes(targets: list[Path], subfolders: bool = False) -> list[Path]:
    """Recipe files from files and folders (``recipes/`` -> every ``*.yaml`` in it; with
    ``subfolders``, in its folders too: ``recipes/fashion_mnist/*.yaml``)."""
    found: list[Path] = []
    for target in targets:
        if target.is_dir():
            found += sorted(target.glob("**/*.yaml" if subfolders else "*.yaml"))
        elif target.is_file():
            found.append(target)
        else:
            raise RecipeError(f"{target}: no such recipe file or folder")
    if not found:
        raise RecipeError(f"{', '.join(map(str, targets))}: no recipe (*.yaml) found")
    return found
