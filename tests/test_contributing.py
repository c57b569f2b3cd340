"""CONTRIBUTING.md, done once: a strategy, a model, a data set and a recipe added to a copy of the
package as the guide says, then run; the test fails when a file the guide does not name had to
change, or when the guide's files are not enough for `kdrun train` to run them."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

GUIDE = REPO / "CONTRIBUTING.md"
NAME = "throwaway"

STRATEGY = '''"""A throwaway method: Hinton's loss at twice the temperature."""

from kdrun.strategies.base import register
from kdrun.strategies.vanilla import Vanilla


@register("throwaway")
class Throwaway(Vanilla):
    """Vanilla KD at 2T."""

    @classmethod
    def build(cls, assets, student):
        strategy = super().build(assets, student)
        strategy.T = 2 * strategy.T
        return strategy
'''

SOURCE = '''

@register("throwaway")
def throwaway(cfg: DictConfig) -> Source:
    """300 random 1x16x16 images in 3 classes."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (300, 1, 16, 16), generator=gen, dtype=torch.uint8)
    return Source((x, torch.arange(300) % 3), ["a", "b", "c"])
'''

RECIPE = """# @package _global_
defaults:
  - override /model@student: throwaway
  - override /dataset: throwaway
  - override /strategy: throwaway
regress:
  description: the guide's throwaway recipe
  tier: full
  seeds: [0]
  expect:
    - mean(student.top1) >= 0.0
"""


def named_files(section: str) -> set[str]:
    """The files the guide's ``## <section>`` lists on its ``Files…:`` line, for ``NAME``."""
    text = GUIDE.read_text()
    body = re.split(rf"(?m)^## {section}\b.*$", text, maxsplit=1)[1].split("\n## ", 1)[0]
    line = re.search(r"^Files[^:]*: (.+)$", body, re.M)
    assert line, f"CONTRIBUTING.md, {section}: no 'Files:' line"
    return {f.replace("<name>", NAME) for f in re.findall(r"`([^`]+)`", line.group(1))}


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def add(root: Path, relative: str, text: str, append: bool = False) -> None:
    path = root / relative.replace("recipes/", "kdrun/conf/recipe/")
    path.write_text((path.read_text() if append else "") + text)


def test_the_guide_names_every_file_a_new_strategy_model_data_set_and_recipe_touch(tmp_path, shared_cache):
    root = tmp_path / "copy"
    shutil.copytree(REPO / "kdrun", root / "kdrun", ignore=shutil.ignore_patterns("__pycache__"))
    before = snapshot(root)

    add(root, f"kdrun/strategies/{NAME}.py", STRATEGY)
    add(root, f"kdrun/conf/strategy/{NAME}.yaml", f"name: {NAME}\n")
    model = (
        (REPO / "kdrun/conf/model/resnet18.yaml").read_text().replace("name: resnet18", "name: squeezenet1_1")
    )
    add(root, f"kdrun/conf/model/{NAME}.yaml", model)
    add(root, "kdrun/data/sources.py", SOURCE, append=True)
    dataset = re.sub(
        r"(?m)^name: digits$", f"name: {NAME}", (REPO / "kdrun/conf/dataset/digits.yaml").read_text()
    )
    dataset = dataset.replace("val: 180", "val: 60").replace("test: 360", "test: 60")
    add(root, f"kdrun/conf/dataset/{NAME}.yaml", dataset)
    add(root, f"recipes/{NAME}.yaml", RECIPE)

    after = snapshot(root)
    changed = {p for p in after if before.get(p) != after[p]}
    guide = set().union(*(named_files(s) for s in ("Add a strategy", "Add a model", "Add a data set")))
    guide |= {f.replace("recipes/", "kdrun/conf/recipe/") for f in named_files("Add a recipe")}
    assert changed == guide

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "kdrun", "train", f"recipe={NAME}", "debug=smoke", "dataset.limit=null",
         f"paths.output_root={out}", f"paths.cache_dir={shared_cache}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (results,) = out.rglob("results.json")
    record = json.loads(results.read_text())
    assert record["status"] == "ok"
    assert record["config"]["strategy"]["name"] == NAME
    assert record["config"]["student"]["name"] == "squeezenet1_1"
    assert record["config"]["dataset"]["name"] == NAME
