"""Teacher outputs cached per augmented view (``kd.cache_logits=views``), after FKD and ReLabel.

Building: for each training image, R views are drawn from the augmentation policy (crop box and
flip, seeded by ``kd.cache.seed`` and the image's index, recorded by ``kdrun.data.replay``), the
frozen teacher runs on them in batches, and its raw logits are kept: all C as fp16, or the top k
(fp16 values, integer indices) plus one fp16 "rest" logit per view, the log-mean-exp of the other
C - k logits, and the view's parameter row (int16). Chunks of images are written atomically to a
folder next to the entry, so a killed build resumes at the first missing chunk; the finished
entry holds one contiguous safetensors file, verified against its digest on every read
(``kdrun.cache.store``).

Training: each epoch the student sees every image as one stored view (``ViewSampler``),
re-rendered from its row, and ``ViewTargets`` hands the strategy the stored logits as its
teacher's outputs: no teacher forward. Raw logits, so every T of a sweep reads one entry.

The key is the logit cache's (method, teacher weights, training inputs, device) plus the policy,
R, k and the draw seed.
"""

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Subset

from kdrun.cache import Cache
from kdrun.cache.logits import CPU, cache_spec
from kdrun.cache.view_format import dense_logits, summarise
from kdrun.config.schema import MISSING, check, choice, number
from kdrun.data import TensorDataModule
from kdrun.data.replay import REPLAYABLE, NotReplayable, Replay, StoredViews, ViewSamples, policy_transforms
from kdrun.data.transforms import build_augment, is_sample_augment
from kdrun.errors import KdrunConfigError
from kdrun.files import atomic_path, write_atomic
from kdrun.progress import phase
from kdrun.runtime.device import module_device, placed, to_device
from kdrun.strategies import STRATEGIES, Strategy

FILE = "views.safetensors"
BUILD = "build.json"
RESTS = ("uniform", "zero")
CHUNK_VIEWS = 16384  # views per chunk of a build: what a kill can cost
BATCH_VIEWS = 512  # views per teacher forward while building


@dataclass
class ViewOptions:
    """``kd.cache``: the views cache's own keys (used with ``kd.cache_logits=views``)."""

    views: int = number(MISSING, ge=1, integer=True)  # R, views stored per training image
    topk: Any = number(MISSING, ge=1, integer=True, optional=True)  # classes kept per view; null = all
    rest: str = choice(MISSING, *RESTS)  # what the classes outside the top k receive
    seed: int = number(MISSING, ge=0, integer=True)  # seed of the view draws


def check_views(cfg: DictConfig) -> None:
    """``kd.cache.*`` against its schema; with ``kd.cache_logits=views``, what cannot be replayed."""
    check(cfg.kd.cache, ViewOptions, "kd.cache")
    if cfg.kd.cache_logits != "views":
        return
    if not STRATEGIES[cfg.strategy.name].caches_views:
        able = ", ".join(sorted(n for n, c in STRATEGIES.items() if c.caches_views))
        raise KdrunConfigError(
            "kd.cache_logits",
            "views",
            f"strategy={cfg.strategy.name} does not read one frozen teacher's logits; allowed with: {able}",
        )
    if cfg.dataset.get("mix") is not None:
        raise KdrunConfigError(
            "kd.cache_logits",
            "views",
            f"not with dataset.mix={cfg.dataset.mix} (stored outputs belong to unmixed views); "
            "allowed: dataset.mix=null, or kd.cache_logits=false",
        )
    if cfg.kd.standardize and cfg.kd.cache.topk is not None:
        raise KdrunConfigError(
            "kd.cache.topk",
            cfg.kd.cache.topk,
            "not with kd.standardize=true (z-scores need every logit); allowed: null",
        )
    augment = cfg.dataset.get("augment")
    try:
        if augment == "batch" and cfg.dataset.batch_augment.color_jitter:
            raise NotReplayable("color_jitter")
        if is_sample_augment(augment):
            Replay(build_augment(augment, cfg.dataset.image_size))
    except NotReplayable as err:
        shown = augment if isinstance(augment, str) else "[...]"
        raise KdrunConfigError(
            "kd.cache_logits",
            "views",
            f"dataset.augment={shown} has random ops that are not recorded ({err}); allowed with "
            f"dataset.augment: cifar, imagenet, none, batch without color_jitter, or lists of "
            f"{'/'.join(REPLAYABLE)}",
        ) from None


class ViewTargets:
    """The stored teacher outputs, read as the strategy's ``teacher_logits``: indexing with flat view
    indices (``i * R + v``) gives (B, C) float32 logits (``dense_logits``).

    ``values``/``indices`` are (N * R, k), ``rest`` (N * R,) or ``None`` when all C are stored.
    """

    def __init__(
        self,
        values: torch.Tensor,
        indices: torch.Tensor,
        rest: torch.Tensor | None,
        num_classes: int,
        mode: str,
    ) -> None:
        self.values, self.indices, self.rest = values, indices, rest
        self.num_classes, self.mode = num_classes, mode

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to(self, device: torch.device) -> "ViewTargets":
        rest = None if self.rest is None else self.rest.to(device)
        return ViewTargets(self.values.to(device), self.indices.to(device), rest, self.num_classes, self.mode)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        rest = None if self.rest is None else self.rest[index]
        return dense_logits(self.values[index], self.indices[index], rest, self.num_classes, self.mode)


def load_or_build(
    strategy: Strategy,
    data: TensorDataModule,
    cache: Cache,
    options: DictConfig,
    device: torch.device = CPU,
    chunk_views: int = CHUNK_VIEWS,
) -> dict[str, Any]:
    """Give ``strategy`` its stored teacher outputs and ``data`` its stored views: from the cache,
    or built once (resuming a killed build). Returns what results.json records."""
    views, seed = int(options.views), int(options.seed)
    num_classes = data.num_classes
    topk = None if options.topk is None or options.topk >= num_classes else int(options.topk)
    replay = Replay(policy_transforms(data.augment, data.input_shape[-1]))
    spec = cache_spec(strategy, data, device) | {
        "policy": data.augment.settings if data.augment else None,
        "views": views,
        "topk": topk,
        "view_seed": seed,
    }
    name = strategy.teacher.__class__.__name__.lower()
    about = {"data": data.name}
    partial = _partial(cache.path("views", name, spec, about))

    def build(folder: Path) -> None:
        x, y = data.splits["train"]
        mean, std = (torch.tensor(data.normalization[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
        samples = ViewSamples(x, y, mean, std, replay, views, seed=seed)
        with placed(strategy, device):
            seconds = _build_chunks(strategy, samples, data.num_workers, topk, partial, chunk_views)
        chunks = sorted(partial.glob("chunk-*.safetensors"))
        parts = [load_file(str(c)) for c in chunks]
        stored = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        if stored["params"].numel() and stored["params"].abs().max() <= torch.iinfo(torch.int16).max:
            stored["params"] = stored["params"].short()  # crop boxes of images under 32k pixels
        if not torch.isfinite(stored["values"]).all():  # fp16 overflows too: never store a poisoned target
            raise FloatingPointError("the teacher's outputs contain NaN or inf (or exceed fp16); not cached")
        with atomic_path(folder / FILE) as tmp:
            save_file(stored, str(tmp))
        record = {"seconds": round(seconds, 3), "images": len(y), "views": views, "topk": topk}
        write_atomic(folder / BUILD, json.dumps(record, indent=2))

    folder, hit = cache.get_or_build("views", name, spec, build, about)
    shutil.rmtree(partial, ignore_errors=True)
    return _attach(strategy, data, folder, replay, options, topk, hit)


def _attach(
    strategy: Strategy,
    data: TensorDataModule,
    folder: Path,
    replay: Replay,
    options: DictConfig,
    topk: int | None,
    hit: bool,
) -> dict[str, Any]:
    """Hand the stored entry in ``folder`` to ``strategy`` (targets) and ``data`` (views)."""
    views, num_classes = int(options.views), data.num_classes
    stored = load_file(str(folder / FILE))
    record = json.loads((folder / BUILD).read_text())
    images = len(data.splits["train"][1])
    if stored["params"].shape[:2] != (images, views) or stored["params"].shape[2] != replay.width:
        shape = tuple(stored["params"].shape)
        raise ValueError(f"{folder / FILE} holds view rows {shape}, not ({images}, {views}, {replay.width})")
    values = stored["values"].flatten(0, 1)  # (N * R, k): row i * R + v is view v of image i
    indices = stored["indices"].flatten(0, 1) if "indices" in stored else _all_classes(values)
    rest = stored["rest"].flatten() if "rest" in stored else None
    strategy.teacher_logits = ViewTargets(values, indices, rest, num_classes, str(options.rest))
    data.views = StoredViews(replay, stored["params"])
    return {
        "mode": "views",
        "source": "disk" if hit else "computed",
        "views": views,
        "topk": topk,
        "rest": str(options.rest) if topk is not None else None,
        "bytes_per_image": round((folder / FILE).stat().st_size / images, 1),
        "build_seconds": record["seconds"],
        "entry": str(folder),
    }


def _all_classes(values: torch.Tensor) -> torch.Tensor:
    return torch.arange(values.shape[-1], dtype=torch.int16).expand(values.shape)


def _partial(final: Path) -> Path:
    """The folder a build keeps its finished chunks in until the entry exists (resume after a kill)."""
    return final.parent / f".partial-{final.name}"


def _build_chunks(
    strategy: Strategy, samples: ViewSamples, workers: int, topk: int | None, partial: Path, chunk_views: int
) -> float:
    """Run the teacher on every image's views, a chunk of images at a time; returns the seconds spent
    (by this build and the killed ones it resumes)."""
    partial.mkdir(parents=True, exist_ok=True)
    teacher = strategy.teacher.eval()
    images, views = len(samples.labels), samples.views
    per_chunk = max(1, chunk_views // views)
    starts = list(range(0, images, per_chunk))
    seconds = 0.0
    with phase(f"teacher outputs of {views} views per image", images, unit="images") as progress:
        for number, start in enumerate(starts):
            stop = min(images, start + per_chunk)
            path = partial / f"chunk-{number:05d}.safetensors"
            done = _finished_chunk(path, stop - start, views)
            if done is None:
                done = _compute_chunk(teacher, samples, range(start, stop), workers, topk, path)
            seconds += done
            progress.advance(stop - start)
    return seconds


def _finished_chunk(path: Path, images: int, views: int) -> float | None:
    """The seconds a chunk a killed build wrote took, or ``None`` when it is missing, altered or
    unreadable (its sha256 is written beside it, after it)."""
    try:
        with open(path, "rb") as handle:
            if hashlib.file_digest(handle, "sha256").hexdigest() != _sidecar(path).read_text().strip():
                return None
        with safe_open(str(path), framework="pt") as handle:
            if handle.get_slice("params").get_shape()[:2] != [images, views]:
                return None
            return float((handle.metadata() or {})["seconds"])
    except (OSError, KeyError, ValueError, RuntimeError):  # safetensors raises its own on garbage
        return None


@torch.no_grad()
def _compute_chunk(
    teacher: torch.nn.Module, samples: ViewSamples, index: range, workers: int, topk: int | None, path: Path
) -> float:
    started = time.perf_counter()
    device = module_device(teacher)
    loader = DataLoader(
        Subset(samples, index), batch_size=max(1, BATCH_VIEWS // samples.views), num_workers=workers
    )
    parts: list[dict[str, torch.Tensor]] = []
    for batch_views, rows, _ in loader:
        logits = teacher(to_device(batch_views.flatten(0, 1), device)).float().cpu()
        kept = summarise(logits, topk)
        parts.append({k: v.unflatten(0, rows.shape[:2]) for k, v in kept.items()} | {"params": rows})
    chunk = {key: torch.cat([p[key] for p in parts]).contiguous() for key in parts[0]}
    seconds = time.perf_counter() - started
    with atomic_path(path) as tmp:  # a kill leaves the chunk whole or absent
        save_file(chunk, str(tmp), metadata={"seconds": f"{seconds:.6f}"})
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    write_atomic(_sidecar(path), digest)  # last: a chunk without it is computed again
    return seconds


def _sidecar(chunk: Path) -> Path:
    return chunk.with_suffix(".sha256")
