"""The two roles of a ``model/`` config: ``teacher=`` and ``student=`` are Hydra's ``model@teacher=``
and ``model@student=``.

One config group, ``model/``, is placed twice by the root config's defaults list
(``model@teacher: cnn``, ``model@student: mlp``). Hydra names such a choice by group and package,
so the documented spelling ``teacher=resnet50`` is translated here, once, wherever overrides enter
(the CLI, the Python API, ``kdrun regress``, resume), and translated back where they are shown.
"""

import hashlib
import re
from collections.abc import Iterable
from importlib.resources import files

ROLES = ("teacher", "student")
MODEL_GROUP = "model"
# Argument lists that take what the class behind them takes: a key not in the config may be added
# there (`+key=value` on the command line, a plain key in a recipe). `+` may also add hydra. keys.
ARGUMENT_SECTIONS = ("trainer.", "optim.optimizer.", "teacher.args.", "student.args.", "logger.")
OPEN_KEYS = (*ARGUMENT_SECTIONS, "hydra.")
_USER = re.compile(r"^(teacher|student)=")
_HYDRA = re.compile(rf"^{MODEL_GROUP}@(teacher|student)=")
MAX_FOLDER_NAME = 255  # bytes: ext4, xfs, apfs, ntfs


def hydra_overrides(overrides: Iterable[str]) -> list[str]:
    """``teacher=resnet50`` -> ``model@teacher=resnet50`` (sweeps too); other overrides as they are."""
    return [_USER.sub(rf"{MODEL_GROUP}@\1=", str(arg)) for arg in overrides]


def user_overrides(overrides: Iterable[str]) -> list[str]:
    """The reverse of ``hydra_overrides``: overrides as a user types (and reads) them."""
    return [_HYDRA.sub(r"\1=", str(arg)) for arg in overrides]


def as_typed(override_dirname: str) -> str:
    """Hydra's ``override_dirname`` (``T=2,model@student=cnn``) in the user's spelling
    (``T=2,student=cnn``): sweep folders and run names read as the command line was typed.

    A ``/`` in a value (``paths.output_root=/scratch/kd``, ``teacher.checkpoint=ckpt/t.pth``) is
    written ``%2F``: the point stays one folder, where the sweep's summary looks for it. A name
    longer than file systems allow (255 bytes) keeps its first 200 bytes and a hash of the whole.
    """
    name = ",".join(user_overrides(override_dirname.split(","))).replace("/", "%2F")
    if len(name.encode()) <= MAX_FOLDER_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return name.encode()[:200].decode(errors="ignore") + f"...{digest}"


def model_configs() -> list[str]:
    """The names ``teacher=`` and ``student=`` accept: the configs of ``model/``."""
    folder = files("kdrun.conf") / MODEL_GROUP
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def is_argument(key: str) -> bool:
    """``key`` names a model's, optimizer's, trainer's or logger's own argument (``ARGUMENT_SECTIONS``)."""
    return key.startswith(ARGUMENT_SECTIONS)
