"""The artefact cache: built once, reused, never half-written."""

import pytest

from kdrun.cache import Cache, cache_key


def test_builds_once_then_hits(tmp_path):
    cache, calls = Cache(tmp_path), []

    def build(folder):
        calls.append(folder)
        (folder / "model.safetensors").write_text("w")

    first, hit1 = cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)
    second, hit2 = cache.get_or_build("teacher", "cnn", {"epochs": 3}, build)
    assert (hit1, hit2) == (False, True)
    assert first == second and len(calls) == 1
    assert (first / "model.safetensors").read_text() == "w"
    assert (first / "spec.json").is_file()


def test_key_changes_with_anything_that_determines_the_artefact():
    base = {"model": {"name": "cnn"}, "epochs": 3, "seed": 0, "data": "abc"}
    for key, value in [("epochs", 4), ("seed", 1), ("data", "abd")]:
        assert cache_key({**base, key: value}) != cache_key(base)
    assert cache_key(dict(reversed(base.items()))) == cache_key(base)


def test_failed_build_leaves_no_entry(tmp_path):
    cache = Cache(tmp_path)

    def broken(folder):
        (folder / "model.safetensors").write_text("half")
        raise RuntimeError("killed mid-training")

    with pytest.raises(RuntimeError):
        cache.get_or_build("teacher", "cnn", {"epochs": 3}, broken)
    assert not cache.path("teacher", "cnn", {"epochs": 3}).exists()
    assert not list((tmp_path / "teacher").glob(".tmp-*"))


def test_a_builder_killed_mid_build_leaves_nothing_usable_and_its_temp_folder_goes(tmp_path):
    cache = Cache(tmp_path)
    final = cache.path("teacher", "cnn", {"epochs": 3})
    killed = final.parent / f".tmp-{final.name}-99999"  # what SIGKILL leaves: no finally ran
    killed.mkdir(parents=True)
    (killed / "model.safetensors").write_text("half")
    folder, hit = cache.get_or_build("teacher", "cnn", {"epochs": 3}, lambda f: (f / "w").write_text("w"))
    assert not hit and (folder / "w").read_text() == "w"
    assert not list(final.parent.glob(".tmp-*"))


def _build_slowly(root: str, log: str) -> None:
    import time
    from pathlib import Path

    def build(folder):
        with open(log, "a") as handle:
            handle.write("built\n")
        time.sleep(0.5)  # long enough that the other process asks while this one builds
        (Path(folder) / "model.safetensors").write_text("w")

    Cache(root).get_or_build("teacher", "cnn", {"epochs": 3}, build)


def test_parallel_jobs_build_an_entry_once(tmp_path):
    import multiprocessing

    log = tmp_path / "builds.log"
    jobs = [
        multiprocessing.get_context("fork").Process(target=_build_slowly, args=(str(tmp_path), str(log)))
        for _ in range(3)
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=60)
    assert [job.exitcode for job in jobs] == [0, 0, 0]
    assert log.read_text() == "built\n"
    assert (Cache(tmp_path).path("teacher", "cnn", {"epochs": 3}) / "model.safetensors").read_text() == "w"
