"""``kdrun layers <model>``: the module names ``strategy.pairs`` accepts, with output shapes."""

import torch
from omegaconf import OmegaConf
from rich.table import Table

from kdrun.config.roles import MODEL_GROUP, model_configs
from kdrun.console import console
from kdrun.models import create_model
from kdrun.models.sections import role_base


def layers(name: str, image_size: int, channels: int, num_classes: int, group: str = "student") -> Table:
    """Build ``name`` (a model config name as ``group`` has it, or any model name) and list its
    submodules' output shapes for one input of the given size."""
    spec = {
        "name": name,
        "variant": None,
        "args": {},
        "pretrained": False,
        "bn_momentum": None,
        "channels_last": False,
    }
    source = "model name"
    if name in model_configs():
        section = role_base(group, name)
        spec.update(
            {
                k: OmegaConf.to_container(section[k]) if k == "args" else section[k]
                for k in ("name", "variant", "args", "bn_momentum", "library", "stem")
                if k in section
            }
        )
        source = f"{MODEL_GROUP}/{name}.yaml as {group}"
    model = create_model(spec, num_classes, (channels, image_size, image_size)).eval()
    shapes: dict[str, tuple] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, n=n: (
                shapes.__setitem__(n, tuple(out.shape)) if isinstance(out, torch.Tensor) else None
            )
        )
        for n, module in model.named_modules()
        if n
    ]
    with torch.no_grad():
        model(torch.zeros(1, channels, image_size, image_size))
    for handle in handles:
        handle.remove()
    table = Table(
        title=f"{name} ({source}): layers for strategy.pairs, input 1x{channels}x{image_size}x{image_size}"
    )
    for column in ("layer", "type", "output shape"):
        table.add_column(column)
    for n, module in model.named_modules():
        if n in shapes:
            table.add_row(n, type(module).__name__, str(shapes[n]))
    return table


def main(args: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="kdrun layers", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model config name (cnn, resnet50, ...) or any model name")
    parser.add_argument("--image-size", type=int, default=28, help="input side (default: mnist_subset's 28)")
    parser.add_argument("--channels", type=int, default=1, help="input channels (default 1)")
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    parser.add_argument(
        "--group",
        choices=("student", "teacher"),
        default="student",
        help="the role a config name like `cnn` plays (a teacher cnn or mlp is wider)",
    )
    options = parser.parse_args(args)
    console.print(layers(options.model, options.image_size, options.channels, options.classes, options.group))
