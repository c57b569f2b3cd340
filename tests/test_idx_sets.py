"""MNIST and Fashion-MNIST from their IDX files: both layouts, raw or gzip, found, checked, streamed.

Small IDX files are generated here: torchvision's layout (``<root>/FashionMNIST/raw/``), the
flat folder of ``.gz`` files Zalando publishes and Debian installs, missing files, a truncated
``.gz`` and wrong magic numbers.
"""

import functools
import gzip
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from kdrun.data import build_datamodule
from kdrun.errors import KdrunConfigError
from tests.conftest import make_cfg, run_kdrun
from tests.test_data import _idx

NAMES = [f"{p}-{kind}" for p in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]


def _arrays(n_train: int = 60, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        out[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28))
        out[f"{prefix}-labels-idx1-ubyte"] = np.arange(n) % 10
    return out


def _write(folder, gz: bool) -> None:
    """The four files in ``folder``, raw or gzip-compressed (``name.gz``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in _arrays().items():
        _idx(folder / name, array)
        if gz:
            raw = folder / name
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw.read_bytes()))
            raw.unlink()


def _build(*overrides: str):
    return build_datamodule(make_cfg("dataset=fashion_mnist", "dataset.split.val=20", *overrides).dataset)


def _same(a, b) -> bool:
    return all(
        torch.equal(a.splits[s][0][:], b.splits[s][0][:]) and torch.equal(a.splits[s][1], b.splits[s][1])
        for s in ("train", "val", "test")
    )


def test_flat_gzip_and_torchvision_raw_layouts_give_the_same_data(tmp_path):
    _write(tmp_path / "tv" / "FashionMNIST" / "raw", gz=False)
    _write(tmp_path / "flat", gz=True)
    raw = _build(f"dataset.root={tmp_path / 'tv'}")
    flat = _build(f"dataset.root={tmp_path / 'flat'}")
    assert {k: len(y) for k, (_, y) in flat.splits.items()} == {"train": 40, "val": 20, "test": 20}
    assert flat.classes[0] == "T-shirt/top" and flat.input_shape == (1, 28, 28)
    assert _same(raw, flat) and raw.fingerprint == flat.fingerprint
    expected = torch.as_tensor(_arrays()["t10k-images-idx3-ubyte"], dtype=torch.uint8)
    assert torch.equal(flat.splits["test"][0].bytes[:, 0], expected)


def test_root_null_finds_the_first_search_folder_that_holds_the_files(tmp_path):
    _write(tmp_path / "system", gz=True)  # as Debian's dataset-fashion-mnist installs them
    (tmp_path / "empty").mkdir()
    found = _build(f"dataset.search=[{tmp_path / 'empty'},{tmp_path / 'system'}]")
    assert _same(found, _build(f"dataset.root={tmp_path / 'system'}"))
    cfg = make_cfg("dataset=fashion_mnist")
    assert cfg.dataset.root is None
    assert list(cfg.dataset.search) == [cfg.paths.data_dir, "/usr/share/datasets/fashion-mnist"]


def test_missing_files_are_one_line_with_both_ways_to_get_them(tmp_path):
    _write(tmp_path / "flat", gz=True)
    (tmp_path / "flat" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(KdrunConfigError) as err:
        _build(f"dataset.search=[{tmp_path / 'flat'}]")
    message = str(err.value)
    assert message.startswith("dataset.root=None: FashionMNIST's IDX files") and "\n" not in message
    assert str(tmp_path / "flat") in message
    assert "apt-get install dataset-fashion-mnist" in message and "dataset.download=true" in message


def test_missing_files_exit_2_on_the_command_line(tmp_path):
    result = run_kdrun(["train", "dataset=fashion_mnist", f"dataset.search=[{tmp_path}]"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install dataset-fashion-mnist" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_truncated_gzip_is_named(tmp_path):
    _write(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    match = r"^dataset\.root=.*train-images-idx3-ubyte\.gz.*not a readable gzip"
    with pytest.raises(KdrunConfigError, match=match):
        _build(f"dataset.root={tmp_path}")


@pytest.mark.parametrize("gz", [False, True])
def test_a_wrong_magic_number_is_named(tmp_path, gz):
    _write(tmp_path, gz=False)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])  # says 3-D images, holds labels
    if gz:
        (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels.read_bytes()))
        labels.unlink()
    with pytest.raises(KdrunConfigError, match=r"t10k-labels-idx1-ubyte.*magic 00000803, expected 00000801"):
        _build(f"dataset.root={tmp_path}")


def test_a_gzip_whose_size_disagrees_with_its_header_is_named(tmp_path):
    _write(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-28]))
    with pytest.raises(KdrunConfigError, match=r"train-images-idx3-ubyte\.gz.*header says \(60, 28, 28\)"):
        _build(f"dataset.root={tmp_path}")


def test_stream_reads_the_gzip_files_like_memory(tmp_path):
    _write(tmp_path, gz=True)
    memory = _build(f"dataset.root={tmp_path}", "dataset.storage=memory")
    stream = _build(f"dataset.root={tmp_path}", "dataset.storage=stream", "dataset.num_workers=0")
    assert stream.streams and not memory.streams
    assert stream.normalization == memory.normalization
    for split in ("train", "val", "test"):
        batches = zip(stream.loader(split, batch_size=16), memory.loader(split, batch_size=16), strict=True)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in batches), split


@pytest.fixture
def mirror(tmp_path):
    """The flat .gz files served over HTTP on localhost: (folder, base URL)."""
    folder = tmp_path / "mirror"
    _write(folder, gz=True)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_fetches_into_the_first_search_folder(tmp_path, monkeypatch, mirror):
    """torchvision's own download (HTTP, md5-checked, extracted), from a mirror of generated files."""
    from torchvision.datasets import FashionMNIST

    mirror, url = mirror
    for proxy in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    resources = [(f"{n}.gz", hashlib.md5((mirror / f"{n}.gz").read_bytes()).hexdigest()) for n in NAMES]
    monkeypatch.setattr(FashionMNIST, "mirrors", [url])
    monkeypatch.setattr(FashionMNIST, "resources", resources)
    target = tmp_path / "data"
    with pytest.raises(KdrunConfigError, match="apt-get install"):
        _build(f"dataset.search=[{target}]")
    fetched = _build(f"dataset.search=[{target}]", "dataset.download=true")
    assert (target / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert _same(fetched, _build(f"dataset.root={mirror}"))
