"""Augmented views drawn once, recorded as numbers, and rendered again exactly from them.

A view of a training image is what a crop/flip pipeline of ``torchvision.transforms.v2`` makes of
it. ``Replay`` draws a view's parameters the way each transform's own ``forward`` does (the same
calls on torch's generator, so a seeded draw equals the live pipeline's output), keeps them as one
row of integers, and re-renders the view from that row with the transform's ``transform(inpt,
params)``: bitwise the image the draw produced. The cache of teacher outputs per view
(``kdrun.cache.views``) stores these rows; ``ViewSamples`` renders them for the student.

Only transforms whose randomness is a crop box or a flip are replayed; a policy with other random
ops (RandAugment, AutoAugment, TrivialAugment, colour jitter) is refused by name.
"""

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from kdrun.data.arrays import ArrayImages
from kdrun.data.augment import Augment
from kdrun.data.memory import ByteImages
from kdrun.data.stream import Streamed
from kdrun.data.transforms import to_pixels


class NotReplayable(ValueError):
    """A transform whose random draws are not recorded (its class name is the message)."""


def _slots() -> dict[type, tuple[str, ...]]:
    """The parameters a replayable transform draws, in the order a row stores them."""
    from torchvision.transforms import v2

    return {
        v2.RandomCrop: ("top", "left"),
        v2.RandomResizedCrop: ("top", "left", "height", "width"),
        v2.RandomHorizontalFlip: ("applied",),
        v2.RandomVerticalFlip: ("applied",),
    }


REPLAYABLE = ("RandomCrop", "RandomResizedCrop", "RandomHorizontalFlip", "RandomVerticalFlip")


def policy_transforms(augment: Any, image_size: int) -> list[Callable]:
    """The v2 transforms of a data module's augmentation (``None``: no augmentation).

    ``dataset.augment=batch`` (kdrun's own crop/flip of whole batches) becomes the v2 crop/flip it
    equals in pixel space: pad ``crop_padding`` black pixels, cut the image size, flip; its colour
    jitter has no v2 twin whose draws are recorded and is refused.
    """
    from torchvision.transforms import v2

    if augment is None:
        return []
    if isinstance(augment, Augment):
        if augment.color_jitter:
            raise NotReplayable("color_jitter")
        crop = [v2.RandomCrop(image_size, padding=augment.crop_padding)] if augment.crop_padding else []
        return crop + ([v2.RandomHorizontalFlip()] if augment.flip else [])
    return list(augment.transforms)


class Replay:
    """Draw, record and re-render views of one crop/flip pipeline."""

    def __init__(self, transforms: list[Callable]) -> None:
        slots = _slots()
        for t in transforms:
            if type(t) not in slots or (hasattr(t, "pad_if_needed") and t.pad_if_needed):
                raise NotReplayable(type(t).__name__)
        self.transforms = list(transforms)
        self.keys = [slots[type(t)] for t in self.transforms]
        self.width = sum(len(k) for k in self.keys)  # integers per view
        self._templates: dict[tuple[int, tuple[int, int]], dict[str, Any]] = {}

    def draw(self, image: Any) -> tuple[Any, list[int]]:
        """One random view of ``image`` (tensor or PIL) and its row; draws from torch's generator
        as ``v2.Compose(transforms)(image)`` does, so both give the same view from the same state."""
        row: list[int] = []
        for t, keys in zip(self.transforms, self.keys, strict=True):
            if keys == ("applied",):
                applied = bool(torch.rand(1) < t.p)  # _RandomApplyTransform: skipped when rand >= p
                row.append(int(applied))
                if applied:
                    image = t.transform(image, {})
                continue
            params = t.make_params([image])
            row += [int(params[k]) for k in keys]
            image = t.transform(image, params)
        return image, row

    def render(self, image: Any, row: list[int]) -> Any:
        """The view a row records, rendered from ``image`` with each transform's own kernel."""
        start = 0
        for t, keys in zip(self.transforms, self.keys, strict=True):
            values = dict(zip(keys, row[start : start + len(keys)], strict=True))
            start += len(keys)
            if keys == ("applied",):
                if values["applied"]:
                    image = t.transform(image, {})
                continue
            if "height" not in keys:  # RandomCrop: the recorded offset in its fixed padding and size
                values = self._template(t, image) | values
            image = t.transform(image, values)
        return image

    def _template(self, t: Callable, image: Any) -> dict[str, Any]:
        """RandomCrop's parameters that do not depend on the draw (padding, crop size) for this
        input size: from its own ``make_params``, with torch's generator left as it was."""
        from torchvision.transforms.v2.functional import get_size

        key = (id(t), tuple(get_size(image)))
        if key not in self._templates:
            with torch.random.fork_rng(devices=[]):
                self._templates[key] = t.make_params([image])
        return self._templates[key]


class ViewSamples(Dataset):
    """Training samples as stored views: item ``i * R + v`` is view ``v`` of image ``i``.

    Returns ``(x, y, i * R + v)``: the normalised view, its label and the flat view index the
    stored teacher outputs are read by. ``params`` (N, R, width) holds the recorded rows;
    without it (``draw=True``) an item is image ``i``'s R fresh views, drawn from a generator
    seeded by ``seed`` and ``i`` (what building the cache runs): ``(R, C, H, W)``, ``(R, width)``, ``i``.
    """

    def __init__(
        self,
        images: Streamed | ByteImages | torch.Tensor,
        labels: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        replay: Replay,
        views: int,
        params: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        from torchvision.transforms import v2

        self.images, self.labels, self.replay, self.views = images, labels, replay, views
        self.mean, self.std = mean[0], std[0]  # (C, 1, 1)
        self.params, self.seed = params, seed
        # A random-resized crop makes its own S x S view of the whole original image (as Samples).
        first = replay.transforms[0] if replay.transforms else None
        self.from_original = isinstance(first, v2.RandomResizedCrop)

    def __len__(self) -> int:
        return len(self.labels) * (self.views if self.params is not None else 1)

    def source(self, i: int) -> Any:
        """Image ``i`` as the pipeline receives it: pixels in [0, 1], or a decoded file."""
        if isinstance(self.images, torch.Tensor):
            return (self.images[i] * self.std + self.mean).clamp(0, 1)
        if isinstance(self.images, ByteImages | ArrayImages):  # stored S x S bytes, as Samples uses them
            return self.images.pixels(i)
        original = self.images.original(i)
        return original if self.from_original else self.images.fit(original)

    def finish(self, image: Any) -> torch.Tensor:
        return (to_pixels(image) - self.mean) / self.std

    def view(self, i: int, row: list[int] | None = None, image: Any = None) -> tuple[torch.Tensor, list[int]]:
        """Image ``i``'s view rendered from ``row``, or drawn (``None``); normalised, with its row.
        ``image``: ``source(i)``, when the caller already has it."""
        if not self.replay.transforms:  # no augmentation: the stored input itself, bitwise
            return self.images[i : i + 1][0], []
        image = self.source(i) if image is None else image
        if row is None:
            view, row = self.replay.draw(image)
        else:
            view = self.replay.render(image, row)
        return self.finish(view), row

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any, int]:
        if self.params is None:
            return self.drawn(index)
        i, v = divmod(int(index), self.views)
        view, _ = self.view(i, self.params[i, v].tolist())
        return view, int(self.labels[i]), int(index)

    def drawn(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        views, rows = [], []
        image = self.source(i) if self.replay.transforms else None  # decoded once for its R views
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + i)  # the same draws in any worker, in any order
            for _ in range(self.views):
                view, row = self.view(i, image=image)
                views.append(view)
                rows.append(row)
        params = torch.tensor(rows, dtype=torch.int32).reshape(self.views, self.replay.width)
        return torch.stack(views), params, i


class StoredViews:
    """What the training loader needs to show stored views: the pipeline and its rows (N, R, width)."""

    def __init__(self, replay: Replay, params: torch.Tensor) -> None:
        self.replay, self.params = replay, params
        self.count = params.shape[1]  # R

    def samples(
        self,
        images: Streamed | ByteImages | torch.Tensor,
        labels: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
    ) -> ViewSamples:
        return ViewSamples(images, labels, mean, std, self.replay, self.count, self.params)


class ViewSampler(Sampler[int]):
    """Each epoch every image once, in a shuffled order, as one of its R stored views.

    Order and view both come from ``generator`` (the data module's shuffle generator, which a
    resumed fit restores), so a seed fixes which view each image shows in each epoch.
    """

    def __init__(self, images: int, views: int, generator: torch.Generator) -> None:
        self.images, self.views, self.generator = images, views, generator

    def __len__(self) -> int:
        return self.images

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.images, generator=self.generator)
        chosen = torch.randint(self.views, (self.images,), generator=self.generator)
        return iter((order * self.views + chosen[order]).tolist())
