"""``kdrun models [pattern]``: the model names teacher=/student= (model/ configs) and teacher.name= accept."""

import argparse
from fnmatch import fnmatch
from importlib.util import find_spec

from kdrun.commands import COMMANDS
from kdrun.config.roles import model_configs
from kdrun.models.cifar import CIFAR_MODELS
from kdrun.models.factory import ALIASES, MODELS, torchvision_names


def main(args: list[str]) -> None:
    """List configs, built-in models, aliases, torchvision and timm names."""
    parser = argparse.ArgumentParser(prog="kdrun models", description=COMMANDS["models"])
    parser.add_argument("pattern", nargs="?", help="filter torchvision and timm names, e.g. '*lite*'")
    pattern = parser.parse_args(args).pattern or "*"
    print("configs:    ", ", ".join(model_configs()), "(model/: teacher=<config>, student=<config>)")
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
