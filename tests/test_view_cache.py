"""Teacher outputs cached per augmented view: exact replay, exact outputs, keys, integrity, resume."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torchvision.transforms import v2

from kdrun.cache import Cache
from kdrun.cache.views import dense_logits, load_or_build, summarise
from kdrun.data import TensorDataModule
from kdrun.data.replay import Replay, ViewSamples
from kdrun.data.transforms import SampleAugment
from kdrun.strategies import STRATEGIES


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))


def _vanilla(teacher: nn.Module) -> nn.Module:
    return STRATEGIES["vanilla"](_model(1), teacher, T=4.0, alpha=0.9)


def _options(views: int = 3, topk: int | None = None, rest: str = "uniform", seed: int = 0):
    return OmegaConf.create({"views": views, "topk": topk, "rest": rest, "seed": seed})


@pytest.fixture
def augmented(tiny_data: TensorDataModule) -> TensorDataModule:
    """The tiny set with the cifar policy scaled to 8 px: pad-2 random crop + horizontal flip
    (8-bit images in memory and streamed files: ``test_image_files_replay_their_views_from_the_files``)."""
    tiny_data.normalization = {"mean": [0.5], "std": [0.25]}
    tiny_data.augment = SampleAugment("crop2", [v2.RandomCrop(8, padding=2), v2.RandomHorizontalFlip()])
    return tiny_data


@pytest.mark.parametrize("policy", ["cifar", "imagenet"])
@pytest.mark.parametrize("pil", [False, True])
def test_a_recorded_view_renders_bitwise_as_the_live_pipeline_drew_it(policy: str, pil: bool) -> None:
    from kdrun.data.transforms import named

    transforms = named(policy, 16)
    replay = Replay(transforms)
    pixels = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    image = v2.functional.to_pil_image(pixels) if pil else pixels
    as_array = np.asarray if pil else torch.Tensor.numpy
    for seed in range(20):
        torch.manual_seed(seed)
        live = v2.Compose(transforms)(image)
        torch.manual_seed(seed)
        drawn, row = replay.draw(image)
        assert np.array_equal(as_array(drawn), as_array(live))
        assert np.array_equal(as_array(replay.render(image, row)), as_array(live))
    assert len(row) == replay.width == (3 if policy == "cifar" else 5)


def test_policies_with_unrecorded_random_ops_are_not_replayable() -> None:
    from kdrun.data.replay import NotReplayable
    from kdrun.data.transforms import named

    with pytest.raises(NotReplayable, match="RandAugment"):
        Replay(named("randaugment", 32))


def test_training_views_are_the_built_views_and_targets_the_live_teacher(
    augmented: TensorDataModule, tmp_path: Path
) -> None:
    teacher = _model().eval()
    strategy = _vanilla(teacher)
    record = load_or_build(strategy, augmented, Cache(tmp_path), _options(views=3))
    assert record["source"] == "computed" and record["views"] == 3 and record["topk"] is None
    x, y = augmented.splits["train"]
    mean, std = torch.tensor([0.5]).view(1, 1, 1, 1), torch.tensor([0.25]).view(1, 1, 1, 1)
    built = ViewSamples(x, y, mean, std, Replay(augmented.augment.transforms), 3, seed=0)
    seen = set()
    for epoch in range(2):
        for batch, labels, index in augmented.loader("train", shuffle=True, augment=True):
            for view, flat in zip(batch, index.tolist(), strict=True):
                image, v = divmod(flat, 3)
                assert torch.equal(view, built.drawn(image)[0][v])  # the view the teacher saw
                seen.add((epoch, image))
            with torch.no_grad():
                live = teacher(batch).half().float()  # stored as fp16
            assert torch.equal(strategy.teacher_outputs(batch, index), live)
            assert torch.equal(labels, y[index // 3])
    assert len(seen) == 2 * len(y)  # each epoch shows every image once


def test_without_augmentation_every_stored_view_is_the_stored_image(
    augmented: TensorDataModule, tmp_path: Path
) -> None:
    augmented.augment = None
    strategy = _vanilla(_model())
    record = load_or_build(strategy, augmented, Cache(tmp_path), _options(views=2))
    assert record["views"] == 2
    x, _ = augmented.splits["train"]
    for batch, _, index in augmented.loader("train", shuffle=True, augment=True):
        assert torch.equal(batch, x[index // 2])


@pytest.mark.parametrize("storage", ["memory", "stream"])
def test_image_files_replay_their_views_from_the_files(tmp_path: Path, storage: str) -> None:
    """An image folder in memory (8-bit) or streamed (a random-resized crop of the decoded file)."""
    from conftest import make_cfg
    from PIL import Image

    from kdrun.data import build_datamodule
    from kdrun.data.replay import policy_transforms

    generator = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(10):
            pixels = generator.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    overrides = [f"dataset.root={tmp_path / 'images'}", "dataset.image_size=8", "dataset.augment=imagenet"]
    cfg = make_cfg("dataset=imagefolder", f"dataset.storage={storage}", "dataset.num_workers=0", *overrides)
    data = build_datamodule(cfg.dataset)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 2)).eval()
    strategy = _vanilla(teacher)
    load_or_build(strategy, data, Cache(tmp_path / "cache"), _options(views=2))
    x, y = data.splits["train"]
    mean, std = (torch.tensor(data.normalization[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    built = ViewSamples(x, y, mean, std, Replay(policy_transforms(data.augment, 8)), 2, seed=0)
    for batch, _, index in data.loader("train", shuffle=True, augment=True):
        for view, flat in zip(batch, index.tolist(), strict=True):
            assert torch.equal(view, built.drawn(flat // 2)[0][flat % 2])
        with torch.no_grad():
            assert torch.equal(strategy.teacher_outputs(batch, index), teacher(batch).half().float())


def test_a_fit_with_views_never_runs_the_teacher(augmented: TensorDataModule, tmp_path: Path) -> None:
    from conftest import make_cfg

    from kdrun.training.fit import fit

    teacher = _model().eval()
    strategy = _vanilla(teacher)
    load_or_build(strategy, augmented, Cache(tmp_path / "cache"), _options())

    def refuse(*_):
        raise AssertionError("the teacher ran during training")

    teacher.register_forward_pre_hook(refuse)
    cfg = make_cfg("logger=none", "recalibrate_bn=false")
    fit(strategy, augmented, cfg, epochs=1, seed=0, log_dir=tmp_path, label="t")


def test_entries_are_keyed_by_teacher_data_policy_views_and_topk(
    augmented: TensorDataModule, tmp_path: Path
) -> None:
    cache = Cache(tmp_path)

    def source(teacher: nn.Module | None = None, data: TensorDataModule = augmented, **options) -> str:
        return load_or_build(_vanilla(teacher or _model()), data, cache, _options(**options))["source"]

    assert source() == "computed"
    assert source() == "disk"
    assert source(rest="zero") == "disk"  # applied when read: the same file
    other_point = STRATEGIES["vanilla"](_model(1), _model(), T=2.0, alpha=0.5)  # another sweep point
    assert load_or_build(other_point, augmented, cache, _options())["source"] == "disk"
    other = _model()
    with torch.no_grad():
        other[1].weight[0, 0] += 1e-3
    assert source(other) == "computed"
    assert source(views=4) == "computed"
    assert source(topk=2) == "computed"
    assert source(seed=1) == "computed"
    flips = TensorDataModule(*augmented.splits.values(), augmented.classes, 8, augmented.fingerprint)
    flips.normalization = augmented.normalization
    flips.augment = SampleAugment("flip", [v2.RandomHorizontalFlip()])
    assert source(data=flips) == "computed"
    x, y = augmented.splits["train"]
    scaled = TensorDataModule((x[:] * 2, y), *list(augmented.splits.values())[1:], augmented.classes, 8, "x2")
    scaled.normalization, scaled.augment = augmented.normalization, augmented.augment
    assert source(data=scaled) == "computed"


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_a_damaged_entry_is_moved_aside_and_built_again(
    augmented: TensorDataModule, tmp_path: Path, damage: str
) -> None:
    cache = Cache(tmp_path)
    first = load_or_build(_vanilla(_model()), augmented, cache, _options())
    stored = Path(first["entry"]) / "views.safetensors"
    blob = stored.read_bytes()
    if damage == "truncate":
        stored.write_bytes(blob[: len(blob) // 2])
    else:
        stored.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    strategy = _vanilla(_model())
    again = load_or_build(strategy, augmented, cache, _options())
    assert again["source"] == "computed"
    assert len(list(stored.parent.parent.glob("*.corrupt-*"))) == 1
    assert stored.read_bytes() == blob


def test_topk_rest_mass_against_hand_values() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -2.0]])
    kept = summarise(logits, topk=2)
    assert kept["indices"].tolist() == [[0, 1]]
    rest = math.log((math.exp(0) + math.exp(-1) + math.exp(-2)) / 3)
    assert kept["rest"].item() == pytest.approx(rest, abs=1e-3)  # fp16
    uniform = dense_logits(kept["values"], kept["indices"], kept["rest"], 5, "uniform")
    zero = dense_logits(kept["values"], kept["indices"], kept["rest"], 5, "zero")

    def hand(T: float) -> list[float]:
        """Uniform: the top two keep exp(z/T), the other three share exp(rest/T) each."""
        weights = [math.exp(2 / T), math.exp(1 / T)] + [math.exp(float(kept["rest"]) / T)] * 3
        return [w / sum(weights) for w in weights]

    # At T = 1 the rest mass is the true one: 1 - p0 - p1 of the full softmax, spread evenly.
    full = torch.softmax(logits, dim=1)[0].tolist()
    assert torch.softmax(uniform, 1)[0].tolist() == pytest.approx(
        full[:2] + [sum(full[2:]) / 3] * 3, abs=1e-3
    )
    for T in (1.0, 4.0):
        assert torch.softmax(uniform / T, 1)[0].tolist() == pytest.approx(hand(T), rel=1e-6)
        top = [math.exp(2 / T), math.exp(1 / T)]
        assert torch.softmax(zero / T, 1)[0].tolist() == pytest.approx(
            [t / sum(top) for t in top] + [0, 0, 0]
        )


def _counting(calls: list[int], limit: int | None = None) -> nn.Module:
    """The teacher, counting its forwards; it dies (as a kill would) after ``limit`` of them."""
    teacher = _model().eval()

    def count(*_) -> None:
        calls.append(1)
        if limit is not None and len(calls) > limit:
            raise RuntimeError("killed")

    teacher.register_forward_pre_hook(count)
    return teacher


CHUNK = 4 * 3  # 4 images of 3 views: 10 chunks of the 40 training images, one teacher forward each


@pytest.mark.parametrize("alter", [False, True])
def test_a_killed_build_resumes_at_its_first_missing_chunk(
    augmented: TensorDataModule, tmp_path: Path, alter: bool
) -> None:
    calls: list[int] = []
    cache = Cache(tmp_path / "resumed")
    with pytest.raises(RuntimeError, match="killed"):
        load_or_build(_vanilla(_counting(calls, 3)), augmented, cache, _options(), chunk_views=CHUNK)
    chunks = sorted((tmp_path / "resumed" / "views").glob(".partial-*/chunk-*.safetensors"))
    assert len(chunks) == 3
    if alter:  # a finished chunk changed on disk: its recorded sha256 no longer matches
        blob = chunks[1].read_bytes()
        chunks[1].write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    calls.clear()
    resumed = load_or_build(_vanilla(_counting(calls)), augmented, cache, _options(), chunk_views=CHUNK)
    assert len(calls) == 7 + alter  # only the chunks the kill left missing (and the altered one)
    assert not list((tmp_path / "resumed" / "views").glob(".partial-*"))
    whole = load_or_build(_vanilla(_model()), augmented, Cache(tmp_path / "whole"), _options())
    assert (Path(resumed["entry"]) / "views.safetensors").read_bytes() == (
        Path(whole["entry"]) / "views.safetensors"
    ).read_bytes()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["dataset.augment=randaugment"],
            r"kd.cache_logits='views': dataset.augment=randaugment has random ops",
        ),
        (
            ["dataset.augment=cifar", "dataset.mix=cutmix"],
            r"kd.cache_logits='views': not with dataset.mix=cutmix",
        ),
        (["strategy=hints"], r"kd.cache_logits='views': strategy=hints does not read one frozen teacher"),
        (["kd.cache.topk=5", "kd.standardize=true"], r"kd.cache.topk=5: not with kd.standardize=true"),
        (["kd.cache.views=0"], r"kd.cache.views=0: must be an integer >= 1"),
        (["kd.cache.rest=even"], r"kd.cache.rest='even': allowed: uniform, zero"),
    ],
)
def test_what_views_cannot_serve_is_refused_in_one_line(overrides: list[str], message: str) -> None:
    from conftest import make_cfg

    from kdrun.errors import KdrunConfigError
    from kdrun.train.validate import validate

    cfg = make_cfg("dataset=cifar10", "kd.cache_logits=views", *overrides)
    with pytest.raises(KdrunConfigError, match=message):
        validate(cfg)


def test_replayable_policies_pass_validation() -> None:
    from conftest import make_cfg

    from kdrun.train.validate import validate

    for augment in ("cifar", "imagenet", "none", "null"):
        validate(make_cfg("dataset=cifar10", "kd.cache_logits=views", f"dataset.augment={augment}"))


def test_kdrun_cache_lists_the_entry_with_its_views_and_k(
    augmented: TensorDataModule, tmp_path: Path
) -> None:
    from conftest import make_cfg

    from kdrun.commands.cache import entries
    from kdrun.train.phases import cache_logits

    load_or_build(_vanilla(_model()), augmented, Cache(tmp_path), _options(views=5, topk=2))
    (entry,) = entries(tmp_path)
    assert entry["kind"] == "views" and entry["origin"].startswith("views 5, top-k 2")
    assert cache_logits(make_cfg("kd.cache_logits=views"), augmented) is False  # not the plain logit cache


@pytest.mark.slow
def test_a_sweep_with_views_records_them_and_leaves_the_shared_data_plain(tmp_path: Path) -> None:
    """Two runs in one process (as sweep points): views, then a live teacher on the same data."""
    from conftest import make_cfg
    from PIL import Image

    from kdrun.train.pipeline import train
    from kdrun.train.prepare import prepare

    generator = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(20):
            pixels = generator.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    common = [
        "dataset=imagefolder",
        f"dataset.root={tmp_path / 'images'}",
        "dataset.image_size=16",
        "dataset.augment=cifar",
        "teacher=mlp",
        "epochs=1",
        "teacher.epochs=1",
        "logger=none",
        "measure.min_run_time=0.01",
        f"paths.output_root={tmp_path / 'outputs'}",
    ]
    views = train(
        make_cfg(*common, "kd.cache_logits=views", "kd.cache.views=3", "kd.cache.topk=2"), tmp_path / "a"
    )
    record = views["teacher_logits"]
    assert record["mode"] == "views" and (record["views"], record["topk"], record["rest"]) == (
        3,
        2,
        "uniform",
    )
    assert record["source"] == "computed" and record["bytes_per_image"] > 0 and record["build_seconds"] > 0
    assert json.loads((tmp_path / "a" / "results.json").read_text())["teacher_logits"] == record
    live = make_cfg(*common, "kd.cache_logits=false")
    assert prepare(live).student_data.views is None  # the data module both runs share
    assert train(live, tmp_path / "b")["teacher_logits"] is None
