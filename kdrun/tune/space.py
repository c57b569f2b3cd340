"""A search space of ``kdrun tune``: a YAML file of the ``tune/`` group (or any path).

```yaml
overrides: [strategy=dkd]       # fixed overrides every trial gets
params:                         # config key -> range
  T: {type: float, low: 1.0, high: 20.0, log: true}
  epochs: {type: int, low: 5, high: 40}
  optim.name: {type: categorical, choices: [adam, sgd]}
sampler: {name: tpe, seed: 0, startup_trials: 5}
pruner: {name: median, startup_trials: 3, warmup_epochs: 1}
```

Every problem is one ``KdrunConfigError`` naming the file, the key, the bad value and what is
allowed, before anything trains.
"""

import dataclasses
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kdrun.config.schema import MISSING, check, choice, number
from kdrun.config.user_yaml import load_yaml
from kdrun.errors import KdrunConfigError

DEFAULT_SPACE = "tune/kd_default.yaml"
MAX_BYTES = 64 * 1024  # a search space is a few lines; a larger file is not one
PARAM_TYPES = ("float", "int", "categorical")


@dataclass
class SamplerOptions:
    """How the next point is chosen."""

    name: str = choice("tpe", "tpe", "random")
    seed: int = number(0, ge=0, integer=True)
    startup_trials: int = number(5, ge=0, integer=True)


@dataclass
class PrunerOptions:
    """When a trial whose ``val/acc`` trails the others is stopped."""

    name: str = choice("median", "median", "successive_halving", "none")
    startup_trials: int = number(3, ge=0, integer=True)
    warmup_epochs: int = number(1, ge=0, integer=True)
    min_epochs: int = number(1, ge=1, integer=True)
    reduction_factor: int = number(3, ge=2, integer=True)


@dataclass
class ParamOptions:
    """One searched key: a float or int range (``log`` for a log scale), or categorical choices."""

    type: str = choice(MISSING, *PARAM_TYPES)
    low: Any = None
    high: Any = None
    log: bool = choice(False, True, False)
    choices: Any = None


@dataclass
class Space:
    """A loaded, checked search space."""

    path: str
    params: dict[str, ParamOptions]
    overrides: list[str] = field(default_factory=list)
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    pruner: PrunerOptions = field(default_factory=PrunerOptions)

    def record(self) -> dict[str, Any]:
        """What the study stores: a later run under the same name must search the same space."""
        return {
            "params": {k: dataclasses.asdict(v) for k, v in self.params.items()},
            "overrides": list(self.overrides),
            "sampler": dataclasses.asdict(self.sampler),
            "pruner": dataclasses.asdict(self.pruner),
        }


def resolve_path(space: str) -> Path:
    """``tune/NAME.yaml`` (or ``tune/NAME``) names a file kdrun ships; anything else is a path."""
    path = Path(space)
    if path.is_file():
        return path
    name = space.removeprefix("tune/").removesuffix(".yaml")
    shipped = Path(str(files("kdrun.conf") / "tune")) / f"{name}.yaml"
    if space.startswith("tune/") and shipped.is_file():
        return shipped
    options = sorted(p.stem for p in shipped.parent.glob("*.yaml"))
    raise KdrunConfigError(
        "--space", space, f"no such file; kdrun's spaces: {', '.join(f'tune/{o}' for o in options)}"
    )


def load_space(space: str) -> Space:
    """Read and check a space file; ``KdrunConfigError`` prefixed with the file on bad input."""
    path = resolve_path(space)
    try:
        return _load(path)
    except KdrunConfigError as err:
        raise KdrunConfigError(f"{space}: {err.key}", err.value, err.allowed) from None


def _load(path: Path) -> Space:
    if path.stat().st_size > MAX_BYTES:
        raise KdrunConfigError("file", f"{path.stat().st_size} bytes", f"a space file is at most {MAX_BYTES}")
    data = load_yaml(path, "file") or {}  # within the size and alias-expansion limits
    allowed = ("overrides", "params", "sampler", "pruner")
    if not isinstance(data, dict):
        raise KdrunConfigError("file", type(data).__name__, f"a mapping of {', '.join(allowed)}")
    for key in data:
        if key not in allowed:
            raise KdrunConfigError(str(key), data[key], f"allowed keys: {', '.join(allowed)}")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise KdrunConfigError("overrides", overrides, "a list of key=value overrides, e.g. [strategy=dkd]")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise KdrunConfigError(
            "params", params, "a mapping of config key -> {type, low, high} (at least one)"
        )
    return Space(
        path=str(path),
        params={str(k): _param(str(k), v) for k, v in params.items()},
        overrides=overrides,
        sampler=_section("sampler", data.get("sampler"), SamplerOptions),
        pruner=_section("pruner", data.get("pruner"), PrunerOptions),
    )


def _section(name: str, node: Any, schema: type) -> Any:
    if node is None:
        return schema()
    if not isinstance(node, dict):
        raise KdrunConfigError(
            name, node, f"a mapping of {', '.join(f.name for f in dataclasses.fields(schema))}"
        )
    check(OmegaConf.create(node), schema, name)
    return schema(**node)


def _param(key: str, node: Any) -> ParamOptions:
    """One ``params`` entry checked: its type, a range with low < high (> 0 on a log scale)."""
    prefix = f"params.{key}"
    if not isinstance(node, dict):
        raise KdrunConfigError(prefix, node, "a mapping {type: float|int|categorical, low, high[, log]}")
    check(OmegaConf.create(node), ParamOptions, prefix)
    param = ParamOptions(**node)
    if param.type == "categorical":
        if not isinstance(param.choices, list) or not param.choices:
            raise KdrunConfigError(f"{prefix}.choices", param.choices, "a non-empty list of values")
        return param
    kind = int if param.type == "int" else (int, float)
    for bound in ("low", "high"):
        value = getattr(param, bound)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise KdrunConfigError(
                f"{prefix}.{bound}", value, f"must be {'an integer' if kind is int else 'a number'}"
            )
    if not param.low < param.high:
        raise KdrunConfigError(f"{prefix}.high", param.high, f"must be > low ({param.low})")
    if param.log and param.low <= 0:
        raise KdrunConfigError(f"{prefix}.low", param.low, "must be > 0 on a log scale (log: true)")
    return param
