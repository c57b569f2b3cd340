"""Cache entries are named for people (model, data set) before their hash; an entry written
under its older ``<name>-<hash>`` name is still found; a hostile name stays one safe folder name."""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from conftest import make_cfg
from rich.console import Console

from kdrun.cache import Cache, cache_key
from kdrun.cache.logits import load_or_compute
from kdrun.cache.store import DIGEST, MARKER
from kdrun.commands.cache import entries, listing
from kdrun.data import TensorDataModule
from kdrun.strategies import STRATEGIES
from kdrun.train.phases import Phases

HASH = r"[0-9a-f]{12}"


@pytest.fixture
def phases(tiny_data: TensorDataModule, tmp_path: Path) -> Phases:
    tiny_data.name = "mnist_subset"
    return Phases(make_cfg("debug=smoke"), tiny_data, Cache(tmp_path / "cache"))


def _as_older(folder: Path, older: str) -> Path:
    """``folder`` as an older kdrun left it: named ``older``, no about.json, its digest matching."""
    moved = folder.with_name(older)
    os.replace(folder, moved)
    (moved / "about.json").unlink()
    files = [f for f in moved.rglob("*") if f.is_file() and f.name != DIGEST]
    sha = {f.relative_to(moved).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    (moved / DIGEST).write_text(json.dumps({"sha256": sha}))
    return moved


def test_teacher_baseline_and_logits_entries_name_the_model_and_the_data(phases: Phases) -> None:
    teacher = phases.teacher()
    baseline = phases.scratch(phases.cfg.student, phases.seed)
    strategy = STRATEGIES["vanilla"](phases.build(phases.cfg.student, 0), teacher.model, T=4.0, alpha=0.9)
    assert load_or_compute(strategy, phases.data, phases.cache) == "computed"
    (logits,) = [p for p in (phases.cache.root / "logits").iterdir() if p.is_dir()]
    assert re.fullmatch(f"cnn-mnist_subset-{HASH}", Path(teacher.path).name), teacher.path
    assert re.fullmatch(f"mlp-mnist_subset-{HASH}", Path(baseline.path).name), baseline.path
    assert re.fullmatch(f"{type(teacher.model).__name__.lower()}-mnist_subset-{HASH}", logits.name)
    assert Path(teacher.path).parent.name == "teacher" and Path(baseline.path).parent.name == "baseline"


def test_an_entry_under_its_older_name_is_still_a_hit(phases: Phases) -> None:
    first = Path(phases.teacher().path)
    older = _as_older(first, "cnn-" + first.name.rsplit("-", 1)[1])
    again = Phases(phases.cfg, phases.data, phases.cache)
    assert again.cached("teacher", phases.cfg.teacher, phases.cfg.teacher.seed)
    asset = again.teacher()
    assert (asset.source, Path(asset.path)) == ("cache", older)
    assert not first.exists()  # nothing trained again under the new name

    strategy = STRATEGIES["vanilla"](phases.build(phases.cfg.student, 0), asset.model, T=4.0, alpha=0.9)
    assert load_or_compute(strategy, phases.data, phases.cache) == "computed"
    (logits,) = [p for p in (phases.cache.root / "logits").iterdir() if p.is_dir()]
    _as_older(logits, "Strategy-" + logits.name.rsplit("-", 1)[1])  # the method's class, as before
    assert load_or_compute(strategy, phases.data, phases.cache) == "disk"


def test_a_hostile_name_is_one_safe_folder_name_and_never_followed_out(tmp_path: Path) -> None:
    cache, spec = Cache(tmp_path / "cache"), {"epochs": 1}
    hostile = "../../" + "x" * 500 + "/.corrupt-\0\n[red]"
    folder = cache.path("teacher", hostile, spec, {"data": "a/../b"})
    assert folder.parent == cache.root / "teacher" and folder.name.endswith(cache_key(spec))
    assert re.fullmatch(r"[A-Za-z0-9_+-]+", folder.name) and len(folder.name) <= 100
    # What the older naming made of it lies outside teacher/: a valid-looking entry there is not used.
    outside = cache.root / f"evil-{cache_key(spec)}"
    outside.mkdir(parents=True)
    (outside / DIGEST).write_text(json.dumps({"sha256": {}}))
    built, hit = cache.get_or_build("teacher", "../evil", spec, lambda f: (f / "w").write_text("w"))
    assert not hit and built.parent == cache.root / "teacher" and (built / "w").is_file()


def test_cache_ls_shows_the_readable_name_and_the_data_set(phases: Phases) -> None:
    entry = Path(phases.teacher().path)
    assert (phases.cache.root / MARKER).is_file() and (entry / DIGEST).is_file()
    out = Console(record=True, width=250)
    out.print(listing(phases.cache.root, entries(phases.cache.root)))
    text = out.export_text()
    assert entry.name in text and "data mnist_subset" in text, text
