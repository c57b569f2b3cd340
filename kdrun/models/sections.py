"""Model sections named inside a strategy's config: ``resnet18`` or ``{name: cnn, seed: 1}``.

A strategy that needs more models than ``teacher`` and ``student`` (several teachers, assistants,
peers) lists them by config name; each entry becomes a full section, like ``cfg.teacher``, read
from the files Hydra composes ``teacher=``/``student=`` from: the role's keys in ``train.yaml``,
then ``model/<name>.yaml``, then (a teacher) ``teacher_size/<name>.yaml``. Hydra places configs
of a group at fixed keys of the defaults list; a list of any length whose entries are names or
mappings is a value it does not expand, so these entries are read here.
"""

from importlib.resources import files
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from kdrun.config.roles import MODEL_GROUP, model_configs
from kdrun.errors import KdrunConfigError, require_file
from kdrun.models.factory import resolve_name


def role_base(role: str, name: str) -> DictConfig:
    """The section ``<role>=<name>`` composes to before any override: what Hydra merges."""
    conf = files("kdrun.conf")
    parts = [OmegaConf.load(conf / "train.yaml")[role], OmegaConf.load(conf / MODEL_GROUP / f"{name}.yaml")]
    tweak = conf / "teacher_size" / f"{name}.yaml"
    if role == "teacher" and tweak.is_file():
        parts.append(OmegaConf.load(tweak))
    return OmegaConf.merge(*parts)


def model_section(cfg: DictConfig, entry: Any, role: str, key: str) -> DictConfig:
    """One entry -> a resolved section in ``role`` (``teacher`` or ``student``), checked: the model
    name must exist.

    A string names a config of ``model/`` (``resnet18``); a mapping picks one with ``name`` and
    overrides its keys (``{name: cnn, seed: 1}``, ``{name: cnn, checkpoint: a.pt}``).
    Interpolations such as ``${epochs}`` resolve against the root config.
    """
    options = model_configs()
    if isinstance(entry, str):
        entry = {"name": entry}
    elif isinstance(entry, DictConfig):
        entry = OmegaConf.to_container(entry, resolve=True)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise KdrunConfigError(
            key,
            entry,
            f"each entry is a model config name ({', '.join(options)}) or a mapping with a `name`",
        )
    if entry["name"] not in options:
        allowed = f"allowed: {', '.join(options)} (configs of {MODEL_GROUP}/)"
        raise KdrunConfigError(key, entry["name"], allowed)
    base = role_base(role, entry["name"])
    unknown = sorted(set(entry) - set(base))
    if unknown:
        raise KdrunConfigError(f"{key}.{unknown[0]}", entry[unknown[0]], f"allowed keys: {', '.join(base)}")
    root = cfg.copy()
    OmegaConf.set_struct(root, False)
    root._section = OmegaConf.merge(base, entry)
    section = OmegaConf.create(OmegaConf.to_container(root._section, resolve=True))
    resolve_name(section.name, section.variant, key=f"{key}.name", library=section.get("library"))
    return section


def model_sections(cfg: DictConfig, key: str, role: str, minimum: int = 1) -> list[DictConfig]:
    """The list at ``key`` (e.g. ``strategy.teachers``) -> sections in ``role``; at least
    ``minimum`` entries."""
    entries = OmegaConf.select(cfg, key)
    if not isinstance(entries, ListConfig) or len(entries) < minimum:
        raise KdrunConfigError(
            key, entries, f"must be a list of at least {minimum} model config names, e.g. [cnn, mlp]"
        )
    return [model_section(cfg, entry, role, f"{key}[{i}]") for i, entry in enumerate(entries)]


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
        if section.checkpoint:
            require_file("teacher.checkpoints", section.checkpoint)
    return sections
