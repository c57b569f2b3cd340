"""Soft-label files: a teacher's train-split logits, shipped without the teacher.

A file is someone else's: it is read with safetensors (tensors and string metadata only; nothing
in it can run code, unlike pickle) and checked against the data before any training.

Layout: tensors ``logits`` (N, C) float and ``ids`` (N,) int64, the train-split sample index of
each row; metadata ``format``, ``classes`` (JSON list), ``fingerprint`` (of the data set and
split), ``teacher``, ``dataset``.
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kdrun.data import TensorDataModule
from kdrun.errors import KdrunConfigError, require_file
from kdrun.files import atomic_path

FORMAT = "kdrun.data.soft_labels/1"
KEY = "strategy.path"


def write_soft_labels(
    path: Path, logits: torch.Tensor, data: TensorDataModule, teacher: str, dataset: str
) -> None:
    """Write ``logits`` (train split, in sample order) and what identifies them; atomically."""
    metadata = {
        "format": FORMAT,
        "classes": json.dumps(list(data.classes)),
        "fingerprint": data.fingerprint,
        "teacher": teacher,
        "dataset": dataset,
    }
    tensors = {"logits": logits.float().contiguous(), "ids": torch.arange(len(logits), dtype=torch.int64)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The file's tensors and metadata, read with safetensors only; one error line otherwise."""
    require_file(KEY, path)
    try:
        return load_file(str(path)), _metadata(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise KdrunConfigError(
            KEY,
            str(path),
            f"not a safetensors file ({str(err).splitlines()[0][:80]}); pickle and other "
            "formats that can run code are refused: export with `kdrun export-soft-labels`",
        ) from None


def read_soft_labels(
    path: str | Path, data: TensorDataModule, check_fingerprint: bool = True
) -> torch.Tensor:
    """The file's logits as (N_train, C), row i = train sample i; ``KdrunConfigError`` if unusable."""
    path = Path(path).expanduser()
    tensors, metadata = _load(path)
    missing = {"logits", "ids"} - set(tensors)
    if missing:
        raise KdrunConfigError(
            KEY, str(path), f"missing tensor(s) {sorted(missing)}; a file holds logits and ids"
        )
    logits, ids = tensors["logits"], tensors["ids"]
    if logits.ndim != 2 or not logits.is_floating_point():
        raise KdrunConfigError(
            KEY, str(path), f"logits must be a 2-D float tensor, got {tuple(logits.shape)} {logits.dtype}"
        )
    if logits.shape[1] != data.num_classes:
        raise KdrunConfigError(
            KEY, str(path), f"has {logits.shape[1]} classes; the data set has {data.num_classes}"
        )
    if "classes" in metadata and json.loads(metadata["classes"]) != list(data.classes):
        raise KdrunConfigError(
            KEY, str(path), f"class names {metadata['classes']} differ from the data set's"
        )
    n = len(data.splits["train"][1])
    expected = torch.arange(n)
    if ids.ndim != 1 or len(ids) != len(logits) or not torch.equal(torch.sort(ids.long()).values, expected):
        raise KdrunConfigError(
            KEY,
            str(path),
            f"sample ids must be each train-split index 0..{n - 1} once ({n} samples); "
            f"the file has {len(ids)} ids for {len(logits)} rows",
        )
    bad = ~torch.isfinite(logits).all(dim=1)
    if bad.any():
        first = int(ids[bad.nonzero()[0, 0]])
        raise KdrunConfigError(
            KEY, str(path), f"{int(bad.sum())} rows hold NaN or inf (first: sample id {first})"
        )
    if check_fingerprint:
        found = metadata.get("fingerprint")
        if found != data.fingerprint:
            raise KdrunConfigError(
                KEY,
                str(path),
                f"data fingerprint {found} differs from this data set's {data.fingerprint} "
                "(other data or split); set soft_labels.check_fingerprint=false to accept it anyway",
            )
    order = torch.empty_like(ids.long())
    order[ids.long()] = torch.arange(len(ids))
    return logits[order].float()


def describe(path: str | Path) -> dict[str, str]:
    """The file's metadata (teacher, dataset, ...), for results.json."""
    return {k: v for k, v in _metadata(Path(path).expanduser()).items() if k != "classes"}
