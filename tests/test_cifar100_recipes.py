"""The CIFAR-100 benchmark recipes: each composes and validates; gpu tier stays out of CI; one
runs end to end for an epoch on generated CIFAR-100-shaped files."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import kdrun.train.pipeline as run_module
from kdrun.regress.command import regress
from kdrun.regress.compose import recipe_configs
from kdrun.regress.recipe import RecipeError, find_recipes, load_recipe
from kdrun.train.validate import validate

FOLDER = Path(__file__).parents[1] / "recipes" / "cifar100"
RECIPES = sorted(FOLDER.glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_composes_and_validates(path, tmp_path):
    recipe = load_recipe(path)
    assert recipe.tier == "gpu" and recipe.published["value"] and recipe.published["source"]
    assert recipe_configs(recipe, [], tmp_path)["seed0"].trainer.accelerator == "gpu"
    # On a machine without a GPU, `gpu` is refused (one line, before any run): validate the rest.
    cfg = recipe_configs(recipe, ["trainer.accelerator=cpu"], tmp_path)["seed0"]
    validate(cfg)
    assert cfg.optim.schedule == "multistep" and list(cfg.optim.milestones) == [150, 180, 210]
    assert cfg.epochs == 240 and cfg.dataset.batch_size == 64 and cfg.dataset.augment == "cifar"
    small_student = cfg.student.name in ("ShuffleV1", "ShuffleV2", "MobileNetV2")
    scale = 9.1 if cfg.kd.standardize else 1.0  # KD + LS: the paper's 9 : 0.1 loss weights, see the recipe
    assert cfg.optim.optimizer.lr == pytest.approx((0.01 if small_student else 0.05) * scale)


def test_gpu_recipes_are_not_picked_by_the_cpu_tiers():
    assert not set(find_recipes([FOLDER.parent])) & set(RECIPES)  # a folder is read flat
    with pytest.raises(RecipeError, match="no recipe of tier 'all'"):
        regress([FOLDER], "all", None, [])


def _fake_cifar100(root: Path, per_class: int, seed: int = 0) -> None:
    """The torchvision on-disk layout (cifar-100-python/train, test, meta) with random images."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n in (("train", per_class), ("test", 1)):
        labels = np.repeat(np.arange(100), n)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        with open(folder / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels.tolist()}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)]}, f)


@pytest.mark.slow  # resnet56 + resnet20 at 32 px, three phases: minutes on a loaded 2-core machine
@pytest.mark.parametrize("method", ["kd", "crd"])  # crd: its banks, heads and 16,384 negatives too
def test_one_epoch_of_a_cifar100_recipe_on_generated_data(tmp_path, monkeypatch, method):
    import torchvision.datasets.cifar

    _fake_cifar100(tmp_path / "data", per_class=3)
    # The files are ours, not the published ones: skip torchvision's MD5 check of them.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    recipe = load_recipe(FOLDER / f"{method}_resnet56_resnet20.yaml")
    overrides = [
        f"paths.output_root={tmp_path}",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.split.val=100",
        "trainer.accelerator=cpu",
        "epochs=1",
        "teacher.epochs=1",
        "measure.min_run_time=0.01",
        "measure.batch_sizes=[1]",
    ]
    cfg = recipe_configs(recipe, overrides, tmp_path)["seed0"]
    results = run_module.train(cfg, tmp_path / "run")
    assert results == json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "ok"
    assert results["teacher"]["name"] == "resnet56" and results["student"]["name"] == "resnet20"
    assert results["student"]["params"] == 278_324
    assert results["strategy"]["name"] == {"kd": "vanilla", "crd": "crd"}[method]
