"""``kdrun <command> [overrides]``: a dispatch table, and the Hydra glue of the Hydra commands.

``train`` and ``export-soft-labels`` are Hydra apps (overrides, ``-m``, ``--help``, completion);
the other commands are argparse programs in ``kdrun.commands``. No logic here.
"""

import contextlib
import difflib
import importlib
import io
import logging
import os
import re
import sys
import warnings

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from kdrun.commands import COMMANDS
from kdrun.config.overrides import (
    PRINT_ONLY,
    check_added_keys,
    check_folders,
    check_sweep_line,
    hydra_arguments,
    leaf_keys,
    variants,
)
from kdrun.config.roles import MODEL_GROUP, ROLES, hydra_overrides, is_argument, user_overrides
from kdrun.config.targets import check_targets
from kdrun.console import fail
from kdrun.errors import KdrunConfigError

# torch warns at import that no CUDA runtime exists; on a CPU machine that is expected.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

CONFIG_PATH = "pkg://kdrun.conf"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def train_command(cfg: DictConfig) -> float | None:
    """The Hydra task for ``kdrun train``; returns the distilled student's val top-1 for sweepers."""
    # Only a call into kdrun.train.pipeline here: parallel launchers pickle this function by value.
    from kdrun.train.pipeline import hydra_task

    return hydra_task(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export_soft_labels")
def export_command(cfg: DictConfig) -> None:
    """The Hydra task for ``kdrun export-soft-labels``."""
    from kdrun.commands.export_soft_labels import export_task

    export_task(cfg)


ENTRY_POINTS = {
    "train": ("train", train_command),
    "export-soft-labels": ("export_soft_labels", export_command),
}
# The argparse commands: the module whose ``main(args)`` runs each (imported only when run).
PROGRAMS = {
    name: f"kdrun.commands.{name}"
    for name in ("report", "export", "regress", "layers", "models", "runs", "ship", "cache", "tune")
}


def _check_overrides(args: list[str], config_name: str = "train") -> None:
    """Compose before Hydra does: a bad flag or override, or a ``_target_`` off the allowlist
    (``kdrun.config.targets``), is one line and exit 2, never Hydra's trace or Hydra calling it.

    For a sweep (``-m``) the first value of each swept key stands in for the list: an unknown key
    or group option fails here; a bad *value* among good ones fails only its own point.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.singleton import Singleton

    state = Singleton.get_state()  # leave Hydra's global state as hydra.main expects to find it
    overrides: list[str] = []
    try:
        flags = hydra_arguments(hydra_overrides(args), config_name)
        overrides = flags.overrides
        if any(getattr(flags, name) for name in PRINT_ONLY):
            return
        parsed = OverridesParser.create().parse_overrides(overrides)
        check_sweep_line(parsed, flags.multirun)
        with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
            for variant in variants(parsed):
                cfg = compose(config_name=config_name, overrides=variant, return_hydra_config=True)
                check_targets(cfg)  # before Hydra instantiates its launcher and callbacks
                OmegaConf.resolve(cfg)
        check_added_keys(parsed, cfg)
        if config_name == "train":
            check_folders(cfg, flags.multirun)
    except KdrunConfigError as err:
        fail(str(err))
    except (HydraException, ValueError, KeyError) as err:
        message = " ".join(str(err).split())
        message = message.split(" Config search path:")[0].removeprefix(f"In '{config_name}': ")
        fail(_explain(message, config_name, overrides))
    finally:
        Singleton.set_state(state)


def _explain(message: str, config_name: str, overrides: list[str]) -> str:
    """Hydra's message for an unknown key or group option, as kdrun's line with the closest names."""
    from difflib import get_close_matches

    from hydra import compose, initialize_config_module

    if key := re.match(r"Could not override '([^']+)'", message):
        if is_argument(key[1]):  # added, not overridden
            return f"{key[1]}: not a config key; an argument not in the config is added with +{key[1]}=…"
        with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
            known = leaf_keys(OmegaConf.to_container(compose(config_name=config_name)))
        close = get_close_matches(key[1], known, n=2, cutoff=0.7)
        hint = f"; did you mean {' or '.join(close)}?" if close else " (`kdrun train --help` lists the keys)"
        return f"{key[1]}: not a config key{hint}"
    if found := re.match(r"Could not find '([^']+)/([^'/]+)' Available options in '[^']+': (.*)", message):
        group, option, options = found[1], found[2], found[3].split()
        close = get_close_matches(option, options, n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        key = group
        if group == MODEL_GROUP:  # teacher= or student=: the override that named the option
            named = [o.split("=", 1)[0] for o in user_overrides(overrides) if option in o.split("=", 1)[-1]]
            key = next((k for k in named if k in ("teacher", "student")), group)
        return f"{key}={option}: no config {group}/{option}; {hint}allowed: {', '.join(options)}"
    return message


def _complete(args: list[str]) -> None:
    """Hydra's shell completion behind the dispatcher.

    The script that `kdrun train -sc install=bash` prints runs `kdrun -sc query=bash` with the
    whole line in COMP_LINE (`kdrun train logger=`): the command word is completed here, and the
    rest goes to the command's Hydra entry with the command word taken out of the line.
    """
    line = os.environ.get("COMP_LINE", "kdrun train ")
    words = line.split()
    if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):  # typing the command
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(name for name in COMMANDS if name.startswith(prefix)))
        return
    if words[1] not in ENTRY_POINTS:  # argparse commands complete nothing
        return
    # Hydra completes a group by its name: `teacher=res` is asked as `model=res` and answered back
    # in the role's name; the other words compose as Hydra's `model@teacher=...`.
    rest, word = words[2:], ""
    if rest and not line.endswith(" "):
        word = rest.pop()
    role = word.split("=", 1)[0] if word.startswith(tuple(f"{r}=" for r in ROLES)) else None
    query = f"{MODEL_GROUP}={word.split('=', 1)[1]}" if role else word
    os.environ["COMP_LINE"] = " ".join([words[0], *hydra_overrides(rest), query]).rstrip() + (
        "" if query else " "
    )
    config_name, entry = ENTRY_POINTS[words[1]]
    sys.argv = [f"kdrun {words[1]}", *[arg for arg in args if arg not in COMMANDS]]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        entry()
    found = [w for w in out.getvalue().split() if not w.startswith(("model=", "teacher_size="))]
    if role:
        found = [f"{role}={w.split('=', 1)[1]}" for w in out.getvalue().split() if w.startswith("model=")]
    elif "=" not in word:
        found += [f"{r}=" for r in ROLES if f"{r}=".startswith(word)]
    print(" ".join(sorted(found)))


def usage() -> str:
    lines = ["usage: kdrun <command> [hydra overrides]  |  kdrun --version", "", "commands:"]
    lines += [f"  {name:<19} {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "`kdrun <command> --help` for its options; `kdrun train --help` lists the config groups",
        "and their choices. Docs: docs/cli/<command>.md.",
    ]
    return "\n".join(lines)


def _warning_line(message: Warning | str, category: type[Warning], *where: object, **_: object) -> str:
    """A Python warning as one line of kdrun's output, without the library's file path and line."""
    return f"warning: {category.__name__}: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    warnings.formatwarning = _warning_line
    args = sys.argv[1:] if argv is None else argv
    try:
        _main(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`kdrun -h | head -3`): stop quietly, as a tool killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


def _main(args: list[str]) -> None:
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return
    if args[0] in ("-V", "--version"):
        from kdrun import __version__

        print(f"kdrun {__version__}")
        return
    if any(arg.startswith(("-sc", "--shell-completion")) for arg in args) and "COMP_LINE" in os.environ:
        _complete(args)
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        fail(f"command={command!r}: {hint}allowed: {', '.join(COMMANDS)}")
    if command in PROGRAMS:
        try:
            importlib.import_module(PROGRAMS[command]).main(rest)
        except KdrunConfigError as err:
            fail(str(err))
        return
    config_name, entry = ENTRY_POINTS[command]
    rest = hydra_overrides(rest)  # teacher=resnet50 -> model@teacher=resnet50 (kdrun.config.roles)
    rest = ["estimate.only=true" if arg == "--estimate" else arg for arg in rest]  # print it and stop
    if command == "train":
        from kdrun.training.resume import resume_args

        try:
            rest = resume_args(rest)
        except KdrunConfigError as err:
            fail(str(err))
        if rest is None:  # resume= names a run that has finished
            return
        rest = hydra_overrides(rest)  # a run started before model/ stored teacher=...
    # `logger=null` reads naturally; Hydra removes a group only with `~logger`.
    rest = ["~logger" if arg == "logger=null" else arg for arg in rest]
    _check_overrides(rest, config_name)
    # Hydra reads sys.argv; keep the command name out of it so overrides parse as usual.
    sys.argv = [f"kdrun {command}", *rest]
    entry()
