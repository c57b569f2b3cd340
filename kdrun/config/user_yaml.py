"""The one way kdrun reads YAML that came from a user: recipes, a run folder's ``.hydra/*.yaml``.

A YAML file can name a node once and repeat it through aliases (``&a`` / ``*a``); nested a few
levels deep, a file of a few hundred bytes expands to billions of nodes ("billion laughs"), which
OmegaConf then copies one by one. Before anything is built, the file's size is checked and its
node graph is composed (aliases stay references, so this is linear in the text) and the nodes it
would expand to are counted. A refusal is one ``KdrunConfigError`` naming the file.
"""

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from kdrun.errors import KdrunConfigError

MAX_BYTES = 1 << 20  # 1 MiB: a run's config.yaml is ~10 KB, a recipe ~1 KB
MAX_NODES = 100_000  # after alias expansion: a run's config.yaml has ~2,000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLimitError(KdrunConfigError):
    """A file over the limits (size, nodes after alias expansion, nesting): never read further."""


def read_text(path: Path | str, key: str) -> str:
    """The file's text, refused when over ``MAX_BYTES`` or not a regular file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:  # a bounded read: /dev/zero or a fifo has no size
            data = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise KdrunConfigError(key, str(path), f"cannot be read ({err.strerror or err})") from None
    if len(data) > MAX_BYTES:
        raise YamlLimitError(key, str(path), f"larger than {MAX_BYTES:,} bytes: not a YAML file kdrun reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KdrunConfigError(key, str(path), "not UTF-8 text") from None


def check_text(text: str, path: Path | str, key: str) -> yaml.Node | None:
    """The composed node graph of ``text``, refused when it expands to over ``MAX_NODES`` nodes,
    refers to itself, nests too deeply or is not YAML."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
        count = 0 if node is None else _expanded(node, {}, set())
    except RecursionError:
        reason = "nested too deeply, or an alias inside itself"
        raise YamlLimitError(key, str(path), f"{reason}: not a YAML file kdrun reads") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise KdrunConfigError(
            key, str(path), f"not valid YAML{where}: {getattr(err, 'problem', err)}"
        ) from None
    if count > MAX_NODES:
        raise YamlLimitError(key, str(path), f"expands to more than {MAX_NODES:,} nodes through its aliases")
    return node


def load_yaml(path: Path | str, key: str) -> Any:
    """The file's content as plain Python (``yaml.safe_load``), within the limits."""
    text = read_text(path, key)
    check_text(text, path, key)
    return yaml.load(text, Loader=_LOADER)


def load_config(path: Path | str, key: str) -> DictConfig | ListConfig:
    """The file as ``OmegaConf.load`` reads it, within the limits."""
    text = read_text(path, key)
    check_text(text, path, key)
    try:
        return OmegaConf.create(text) if text.strip() else OmegaConf.create({})
    except Exception as err:  # OmegaConf's own refusal (duplicate key, a scalar document)
        reason = " ".join(str(err).split())[:200]
        raise KdrunConfigError(key, str(path), f"not a config: {reason}") from None


def _expanded(node: yaml.Node, memo: dict[int, int], open_nodes: set[int]) -> int:
    """How many nodes ``node`` stands for once every alias is copied out."""
    if id(node) in memo:
        return memo[id(node)]
    if id(node) in open_nodes:
        raise RecursionError("an alias refers to a node that contains it")
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded(child, memo, open_nodes)
        if total > MAX_NODES:  # enough to refuse; counting on would only cost time
            break
    open_nodes.discard(id(node))
    memo[id(node)] = total
    return total
