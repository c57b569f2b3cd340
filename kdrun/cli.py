"""``kdrun <command> [overrides]``: dispatch to the command's Hydra entry point. No logic here."""

import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kdrun.console import err_console
from kdrun.errors import KdrunConfigError

# torch warns at import that no CUDA runtime exists; on a CPU machine that is expected.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

CONFIG_PATH = "pkg://kdrun.conf"
COMMANDS = {
    "train": "distil a teacher into a student; report it against the teacher and a scratch student",
    "report": "summarise every run under a folder: table, summary.csv/.md, T x alpha heatmap.png",
    "models": "list the model names teacher=/student= configs and teacher.name= accept",
}
EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    """Print one error line and exit with status 2 (bad input)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_BAD_INPUT)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def train_command(cfg: DictConfig) -> float | None:
    """The Hydra task for ``kdrun train``; returns the distilled student's val top-1 for sweepers."""
    from kdrun.run import record_failure, train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    started = time.perf_counter()
    try:
        results = train(cfg, run_dir)
    except KdrunConfigError as err:
        if not in_sweep:
            fail(str(err))
        record_failure(cfg, run_dir, err, started)  # the point fails; the sweep goes on
        return None
    except Exception as err:  # train() recorded it, with the traceback, in results.json
        err_console.print(
            f"error: run failed: {type(err).__name__}: {err} (traceback in {run_dir / 'results.json'})",
            markup=False,
            soft_wrap=True,
        )
        if not in_sweep:
            sys.exit(1)
        return None
    return results["student"]["val_top1"]  # what a sweeper (Optuna) maximises: val, never test


def _check_overrides(overrides: list[str]) -> None:
    """Compose once before Hydra does, so a bad override is one line and exit 2, not Hydra's trace.

    Sweeps (``-m``) and Hydra's own flags are left to Hydra.
    """
    if any(arg.startswith("-") for arg in overrides):
        return
    from hydra import compose, initialize_config_module

    try:
        with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
        OmegaConf.resolve(cfg)
    except (HydraException, ValueError, KeyError) as err:
        message = " ".join(str(err).split())
        fail(message.split(" Config search path:")[0].removeprefix("In 'train': "))


def _models() -> None:
    from kdrun.models import model_names
    from kdrun.models.factory import ALIASES, MODELS

    print("built-in:", ", ".join(MODELS))
    print("aliases: ", ", ".join(f"{k} (variant: {'/'.join(v[2])})" for k, v in ALIASES.items()))
    print("torchvision:", ", ".join(model_names()[len(MODELS) + len(ALIASES) :]))
    print("use: kdrun train teacher=resnet50 student=mlp, or teacher.name=<any name above>")


def _report(args: list[str]) -> None:
    import argparse

    from kdrun.report.command import METRICS, report

    parser = argparse.ArgumentParser(prog="kdrun report", description=COMMANDS["report"])
    parser.add_argument("dir", type=Path, help="a run directory, a multirun directory, or any folder of runs")
    parser.add_argument("--metric", default="gain", help=f"heatmap cell value: {' | '.join(METRICS)}")
    options = parser.parse_args(args)
    try:
        report(options.dir, options.metric)
    except KdrunConfigError as err:
        fail(str(err))


def usage() -> str:
    lines = ["usage: kdrun <command> [hydra overrides]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
    lines += ["", "`kdrun train --help` lists the config groups and their choices."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        fail(f"command={command!r}: allowed: {', '.join(COMMANDS)}")
    if command == "models":
        _models()
        return
    if command == "report":
        _report(rest)
        return
    _check_overrides(rest)
    # Hydra reads sys.argv; keep the command name out of it so overrides parse as usual.
    sys.argv = [f"kdrun {command}", *rest]
    train_command()
