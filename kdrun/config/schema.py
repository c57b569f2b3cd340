"""Typed config schemas: dataclasses next to the code that reads each config section.

A schema is a dataclass whose fields are the section's keys. OmegaConf checks the types and that
no unknown key is set; the bounds and allowed values live in each field's metadata
(``number(...)``, ``choice(...)``). ``check`` turns either failure into one ``KdrunConfigError``
line that names the key, the bad value and what is allowed.
"""

import dataclasses
import math
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from kdrun.errors import KdrunConfigError

__all__ = ["MAX_SEED", "MISSING", "check", "choice", "number"]

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


def number(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    integer: bool = False,
    optional: bool = False,
) -> Any:
    """A numeric field with bounds: ``number(1.0, gt=0)``; ``integer=True`` refuses 2.5;
    ``optional=True`` also accepts null."""
    meta = {"ge": ge, "gt": gt, "le": le, "integer": integer, "optional": optional}
    return dataclasses.field(default=default, metadata=meta)


def choice(default: Any, *allowed: Any) -> Any:
    """A field whose value must be one of ``allowed``."""
    return dataclasses.field(default=default, metadata={"choices": allowed})


def allowed_text(meta: dict[str, Any]) -> str:
    """What a field accepts, in the words of kdrun's error lines."""
    if "choices" in meta:
        return "allowed: " + ", ".join(_show(c) for c in meta["choices"])
    integer = meta.get("integer")
    kind = "an integer" if integer else "a number"

    def show(bound: float) -> str:
        return str(int(bound)) if integer else f"{bound:g}"

    parts = [f"> {show(meta['gt'])}" if meta.get("gt") is not None else None]
    parts.append(f">= {show(meta['ge'])}" if meta.get("ge") is not None else None)
    parts.append(f"<= {show(meta['le'])}" if meta.get("le") is not None else None)
    bounds = [p for p in parts if p]
    if len(bounds) == 2 and bounds[0].startswith(">=") and bounds[1].startswith("<=") and not integer:
        return f"must be {kind} in [{show(meta['ge'])}, {show(meta['le'])}]"
    return f"must be {kind}" + (" " + " and ".join(bounds) if bounds else "")


def _show(value: Any) -> str:
    return (
        {True: "true", False: "false", None: "null"}.get(value, str(value))
        if not isinstance(value, int | float) or isinstance(value, bool)
        else str(value)
    )


def _ok(value: Any, meta: dict[str, Any]) -> bool:
    if "choices" in meta:
        return any(value == c and type(value) is type(c) for c in meta["choices"])
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False  # nan passes every comparison
    if meta.get("integer") and not isinstance(value, int):
        return False
    return not (
        (meta.get("gt") is not None and value <= meta["gt"])
        or (meta.get("ge") is not None and value < meta["ge"])
        or (meta.get("le") is not None and value > meta["le"])
    )


def check(node: DictConfig, schema: type, prefix: str = "") -> None:
    """Check ``node`` (the section at ``prefix``; ``""`` for the root) against ``schema``.

    Unknown keys, values of the wrong type and values out of bounds raise ``KdrunConfigError``.
    """
    fields = {f.name: f for f in dataclasses.fields(schema)}

    def full(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    for key in node:
        if key not in fields:
            raise KdrunConfigError(full(str(key)), node[key], f"allowed keys: {', '.join(fields)}")
    try:
        OmegaConf.merge(OmegaConf.structured(schema), node)
    except (ValidationError, ConfigKeyError) as err:
        name = str(err.full_key or err.key).split(".")[0]
        meta = dict(fields[name].metadata) if name in fields else {}
        allowed = allowed_text(meta) if meta else f"must be of type {_type_name(fields, name)}"
        raise KdrunConfigError(full(name), node.get(name), allowed) from None
    for name, field in fields.items():
        if not field.metadata or name not in node or OmegaConf.is_missing(node, name):
            continue
        if node[name] is None and field.metadata.get("optional"):
            continue
        if not _ok(node[name], field.metadata):
            raise KdrunConfigError(full(name), node[name], allowed_text(dict(field.metadata)))


def _type_name(fields: dict[str, dataclasses.Field], key: str) -> str:
    field = fields.get(key)
    return getattr(field.type, "__name__", str(field.type)) if field else "?"
