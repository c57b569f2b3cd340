"""``kdrun <command> [overrides]``: dispatch to the command's Hydra entry point. No logic here."""

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from kdrun.console import fail, fail_run
from kdrun.errors import KdrunConfigError

# torch warns at import that no CUDA runtime exists; on a CPU machine that is expected.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

CONFIG_PATH = "pkg://kdrun.conf"
COMMANDS = {
    "train": "distil a teacher into a student; report it against the teacher and a scratch student",
    "report": "summarise every run under a folder: table, summary.csv/.md, T x alpha heatmap.png",
    "export": "ship a run's distilled student as ONNX / TorchScript: parity check, latency, model card",
    "export-soft-labels": "write the teacher's train-split logits to out=FILE, for strategy=soft_labels",
    "regress": "run recipes (files or folders) and check the metrics each must reach; exit 1 on regression",
    "layers": "list a model's layer names and output shapes (for strategy.pairs of hints/attention)",
    "models": "list the model names teacher=/student= configs and teacher.name= accept",
}


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def train_command(cfg: DictConfig) -> float | None:
    """The Hydra task for ``kdrun train``; returns the distilled student's val top-1 for sweepers."""
    # Only a call into kdrun.run here: parallel launchers pickle this function by value.
    from kdrun.run import hydra_task

    return hydra_task(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export_soft_labels")
def export_command(cfg: DictConfig) -> None:
    """The Hydra task for ``kdrun export-soft-labels``."""
    from kdrun.export_labels import export_task

    export_task(cfg)


ENTRY_POINTS = {
    "train": ("train", train_command),
    "export-soft-labels": ("export_soft_labels", export_command),
}


def _check_overrides(args: list[str], config_name: str = "train") -> None:
    """Compose before Hydra does, so a bad override is one line and exit 2, not Hydra's trace.

    For a sweep (``-m``) the first value of each swept key stands in for the list: an unknown key
    or group option fails here; a bad *value* among good ones fails only its own point. Other
    Hydra flags (``--help``, ``--cfg``, ...) are left to Hydra.
    """
    overrides = [arg for arg in args if arg not in ("-m", "--multirun")]
    if any(arg.startswith("-") for arg in overrides):
        return
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.singleton import Singleton

    # Leave Hydra's global state as hydra.main expects to find it.
    state = Singleton.get_state()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        values = [
            list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.input_line] for o in parsed
        ]
        keys = [o.get_key_element() if o.is_sweep_override() else None for o in parsed]

        def line(i: int, value: str) -> str:
            return value if keys[i] is None else f"{keys[i]}={value}"

        first = [line(i, v[0]) for i, v in enumerate(values)]
        # Each value of each swept key once, the other keys at their first value.
        variants = [first] + [
            [*first[:i], line(i, value), *first[i + 1 :]] for i, v in enumerate(values) for value in v[1:]
        ]
        with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
            for variant in variants:
                cfg = compose(config_name=config_name, overrides=variant, return_hydra_config=True)
                OmegaConf.resolve(cfg)
    except (HydraException, ValueError, KeyError) as err:
        message = " ".join(str(err).split())
        fail(message.split(" Config search path:")[0].removeprefix(f"In '{config_name}': "))
    finally:
        Singleton.set_state(state)


def _models(args: list[str]) -> None:
    import argparse
    from fnmatch import fnmatch
    from importlib.util import find_spec

    from kdrun.models.cifar import CIFAR_MODELS
    from kdrun.models.factory import ALIASES, MODELS, torchvision_names
    from kdrun.sections import group_options

    parser = argparse.ArgumentParser(prog="kdrun models", description=COMMANDS["models"])
    parser.add_argument("pattern", nargs="?", help="filter torchvision and timm names, e.g. '*lite*'")
    pattern = parser.parse_args(args).pattern or "*"
    print("configs:     teacher=" + ", ".join(group_options("teacher")))
    print("             student=" + ", ".join(group_options("student")))
    print("built-in:   ", ", ".join(n for n in MODELS if n not in CIFAR_MODELS))
    print("cifar zoo:  ", ", ".join(CIFAR_MODELS), "(32 px; RepDistiller/mdistiller checkpoints load)")
    print("aliases:    ", ", ".join(f"{k} (variant: {'/'.join(v[2])})" for k, v in ALIASES.items()))
    print("torchvision:", ", ".join(n for n in torchvision_names() if fnmatch(n, pattern)))
    if find_spec("timm") is None:
        print("timm:        not installed (pip install 'kdrun[timm]')")
    else:
        import timm

        names = timm.list_models(pattern)
        if pattern == "*":
            names = [f"{len(names)} models (`kdrun models '*lite*'` filters)"]
        print("timm:       ", ", ".join(names))
    print("use: teacher=<config> student=<config>; any torchvision name: student.name=<name>;")
    print("     any timm name: student=timm student.name=<name> (the same for teacher)")


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
    os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
    config_name, entry = ENTRY_POINTS[words[1]]
    sys.argv = [f"kdrun {words[1]}", *[arg for arg in args if arg not in COMMANDS]]
    entry()


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


def _export(args: list[str]) -> None:
    import argparse
    from importlib.resources import files

    from kdrun.export import FORMATS, ExportParityError, export_run
    from kdrun.run import show_results

    defaults = OmegaConf.load(str(files("kdrun.conf") / "export" / "none.yaml"))
    parser = argparse.ArgumentParser(
        prog="kdrun export",
        description=COMMANDS["export"],
        epilog="Writes <run dir>/export/student.<format>, MODEL_CARD.md, and `export` in results.json.",
    )
    parser.add_argument("run_dir", type=Path, help="a finished `kdrun train` run directory")
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=[*FORMATS, "all"],
        help="repeat for several formats; 'onnx' when none is given",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=defaults.atol,
        help="max |logit difference| allowed (default: %(default)s)",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=defaults.min_top1_agreement,
        help="min fraction of test images with the same top-1 class (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=defaults.calibration_images,
        help="onnx_int8: training images that calibrate activation ranges",
    )
    parser.add_argument(
        "--calibration-method",
        default=defaults.calibration_method,
        help="onnx_int8: minmax | entropy | percentile",
    )
    parser.add_argument(
        "--max-int8-drop",
        type=float,
        default=defaults.max_int8_drop,
        help="onnx_int8: largest top-1 drop (points) below the fp32 student",
    )
    options = parser.parse_args(args)
    formats = options.formats or ["onnx"]
    formats = list(FORMATS) if "all" in formats else list(dict.fromkeys(formats))
    settings = {
        "formats": formats,
        "atol": options.atol,
        "min_top1_agreement": options.min_agreement,
        "calibration_images": options.calibration_images,
        "calibration_method": options.calibration_method,
        "max_int8_drop": options.max_int8_drop,
    }
    try:
        results = export_run(options.run_dir, settings)
    except KdrunConfigError as err:
        fail(str(err))
    except ExportParityError as err:
        show_results(err.results, options.run_dir)
        fail_run(f"export: {err} (details in {options.run_dir / 'results.json'})")
    show_results(results, options.run_dir)


def _regress(args: list[str]) -> None:
    import argparse

    from kdrun.regress.command import regress
    from kdrun.regress.recipe import RecipeError

    parser = argparse.ArgumentParser(
        prog="kdrun regress",
        description=COMMANDS["regress"],
        epilog="Overrides after `--` apply to every run: `kdrun regress recipes/ -- epochs=5`.",
    )
    parser.add_argument(
        "targets",
        type=Path,
        nargs="*",
        help="recipe files or folders (default: ./recipes if it exists, else the recipes kdrun ships)",
    )
    parser.add_argument(
        "--tier",
        choices=("fast", "full", "gpu", "all"),
        default="all",
        help="which recipes to run: all = fast + full; gpu ones only with --tier gpu (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default outputs/regress/<time>)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="run every recipe on these seeds instead of its own (are the bounds robust to new seeds?)",
    )
    args, overrides = (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    options = parser.parse_args(args)
    try:
        code = regress(
            options.targets or [default_recipes()], options.tier, options.out, overrides, options.seeds
        )
    except RecipeError as err:
        fail(str(err))
    sys.exit(code)


def default_recipes() -> Path:
    """``./recipes`` in a checkout; from any other folder, the recipes that ship in the package."""
    from importlib.resources import files

    local = Path("recipes")
    return local if local.is_dir() else Path(str(files("kdrun.conf") / "recipe"))


def usage() -> str:
    lines = ["usage: kdrun <command> [hydra overrides]  |  kdrun --version", "", "commands:"]
    lines += [f"  {name:<19} {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "`kdrun <command> --help` for its options; `kdrun train --help` lists the config groups",
        "and their choices. Docs: docs/cli/<command>.md.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
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
        fail(f"command={command!r}: allowed: {', '.join(COMMANDS)}")
    if command == "models":
        _models(rest)
        return
    if command == "report":
        _report(rest)
        return
    if command == "regress":
        _regress(rest)
    if command == "export":
        _export(rest)
        return
    if command == "layers":
        from kdrun.errors import KdrunConfigError as _Err
        from kdrun.layers import main as layers_main

        try:
            layers_main(rest)
        except _Err as err:
            fail(str(err))
        return
    config_name, entry = ENTRY_POINTS[command]
    if command == "train":
        from kdrun.resume import resume_args

        try:
            rest = resume_args(rest)
        except KdrunConfigError as err:
            fail(str(err))
        if rest is None:  # resume= names a run that has finished
            return
    # `logger=null` reads naturally; Hydra removes a group only with `~logger`.
    rest = ["~logger" if arg == "logger=null" else arg for arg in rest]
    _check_overrides(rest, config_name)
    # Hydra reads sys.argv; keep the command name out of it so overrides parse as usual.
    sys.argv = [f"kdrun {command}", *rest]
    entry()
