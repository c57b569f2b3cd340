"""Model sections named inside a strategy's config: ``resnet18`` or ``{name: cnn, seed: 1}``.

A strategy that needs more models than ``teacher`` and ``student`` (several teachers, assistants,
peers) lists them by config name; each entry becomes a full section, like ``cfg.teacher``.
"""

from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from kdrun.errors import KdrunConfigError
from kdrun.models.factory import resolve_name


def group_options(group: str) -> list[str]:
    """The config names of a group (``teacher`` or ``student``)."""
    folder = files("kdrun.conf") / group
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def model_section(cfg: DictConfig, entry: Any, group: str, key: str) -> DictConfig:
    """One entry -> a resolved section of ``group``, checked: the model name must exist.

    A string names a config of the group (``teacher/resnet18.yaml``); a mapping picks one with
    ``name`` and overrides its keys (``{name: cnn, seed: 1}``, ``{name: cnn, checkpoint: a.pt}``).
    Interpolations such as ``${epochs}`` resolve against the root config.
    """
    options = group_options(group)
    if isinstance(entry, str):
        entry = {"name": entry}
    elif isinstance(entry, DictConfig):
        entry = OmegaConf.to_container(entry, resolve=True)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise KdrunConfigError(
            key,
            entry,
            f"each entry is a {group} config name ({', '.join(options)}) or a mapping with a `name`",
        )
    if entry["name"] not in options:
        raise KdrunConfigError(key, entry["name"], f"allowed: {', '.join(options)} (configs of {group}/)")
    base = OmegaConf.load(files("kdrun.conf") / group / f"{entry['name']}.yaml")
    unknown = sorted(set(entry) - set(base))
    if unknown:
        raise KdrunConfigError(f"{key}.{unknown[0]}", entry[unknown[0]], f"allowed keys: {', '.join(base)}")
    root = cfg.copy()
    OmegaConf.set_struct(root, False)
    root._section = OmegaConf.merge(base, entry)
    section = OmegaConf.create(OmegaConf.to_container(root._section, resolve=True))
    resolve_name(section.name, section.variant, key=f"{key}.name", library=section.get("library"))
    return section


def model_sections(cfg: DictConfig, key: str, group: str, minimum: int = 1) -> list[DictConfig]:
    """The list at ``key`` (e.g. ``strategy.teachers``) -> sections; at least ``minimum`` entries."""
    entries = OmegaConf.select(cfg, key)
    if not isinstance(entries, ListConfig) or len(entries) < minimum:
        raise KdrunConfigError(
            key, entries, f"must be a list of at least {minimum} {group} config names, e.g. [cnn, mlp]"
        )
    return [model_section(cfg, entry, group, f"{key}[{i}]") for i, entry in enumerate(entries)]


def display_name(section: DictConfig) -> str:
    """``mobilenet_v3_small`` for a section with a variant, else its name."""
    return section.name if section.variant is None else f"{section.name}_{section.variant}"


def is_ensemble(section: DictConfig) -> bool:
    """``teacher=ensemble``: a section that stands for several member models."""
    return section.name == "ensemble"


def ensemble_members(cfg: DictConfig) -> list[DictConfig]:
    """The member sections of ``teacher=ensemble``: ``members`` seeds, or one per checkpoint."""
    teacher = cfg.teacher
    if teacher.model == "ensemble":
        raise KdrunConfigError("teacher.model", "ensemble", "an ensemble's members are single models")
    if teacher.checkpoints is not None:
        paths = list(teacher.checkpoints)
        if len(paths) < 2:
            raise KdrunConfigError("teacher.checkpoints", paths, "must list at least 2 files, one per member")
        entries = [{"name": teacher.model, "checkpoint": str(p), "epochs": teacher.epochs} for p in paths]
        key = "teacher.checkpoints"
    else:
        k = teacher.members
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise KdrunConfigError("teacher.members", k, "must be an integer >= 2")
        entries = [
            {"name": teacher.model, "seed": teacher.seed + i, "epochs": teacher.epochs} for i in range(k)
        ]
        key = "teacher.model"
    sections = [model_section(cfg, entry, "teacher", key) for entry in entries]
    for section in sections:
        if section.checkpoint and not Path(str(section.checkpoint)).expanduser().is_file():
            raise KdrunConfigError("teacher.checkpoints", str(section.checkpoint), "file does not exist")
    return sections
