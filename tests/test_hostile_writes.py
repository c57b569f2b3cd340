"""Files kdrun writes: never through a link a run folder, an output folder or a cache holds."""

import ast
import logging
import os
from pathlib import Path

import pytest

from kdrun.files import LogFileHandler, atomic_open, atomic_path, file_mode, open_append, write_atomic


def _trap(folder: Path, name: str, outside: Path) -> Path:
    """A link ``folder/name`` to ``outside`` (a file that must stay as it is)."""
    outside.write_text("precious")
    link = folder / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    return link


def test_write_atomic_replaces_a_link_instead_of_writing_through_it(tmp_path):
    work, outside = tmp_path / "work", tmp_path / "outside.txt"
    link = _trap(work, "results.md", outside)
    write_atomic(link, "new")
    assert outside.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "new"
    assert (link.stat().st_mode & 0o777) == file_mode()
    write_atomic(work / "b.bin", b"\x00\x01", fsync=True)
    assert (work / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in work.iterdir()) == ["b.bin", "results.md"]  # no temporary left


def test_atomic_writers_leave_the_target_alone_on_error(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.pt"]
    with atomic_path(target) as tmp:
        assert (
            tmp.parent == tmp_path
            and tmp.name.startswith(".tmp-model-")
            and tmp.suffix == ".pt"
            and tmp.stat().st_size == 0
        )
        tmp.write_text("new")
    with atomic_open(tmp_path / "t.csv", "w", newline="") as handle:
        handle.write("a,b\r\n")
    assert target.read_text() == "new" and (tmp_path / "t.csv").read_bytes() == b"a,b\r\n"


def test_a_fixed_temporary_name_link_is_not_followed(tmp_path):
    """A link planted where a writer with a fixed temporary name would write (``.x.tmp``)."""
    outside = tmp_path / "outside.txt"
    for name in (".MODEL_CARD.md.tmp", ".student.torchscript.pt.tmp"):
        _trap(tmp_path / "export", name, outside)
        write_atomic(tmp_path / "export" / name.removeprefix(".").removesuffix(".tmp"), "card")
    assert outside.read_text() == "precious"


def test_logs_are_appended_but_never_through_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    link = _trap(tmp_path / "run", "train.log", outside)
    with pytest.raises(OSError):
        open_append(link)
    with pytest.raises(OSError):
        LogFileHandler(str(link))
    log = tmp_path / "run" / "ok.log"
    for line in ("a\n", "b\n"):
        with open_append(log) as handle:
            handle.write(line)
    handler = LogFileHandler(str(log))
    handler.emit(logging.LogRecord("x", logging.INFO, "", 0, "c", None, None))
    handler.close()
    assert log.read_text() == "a\nb\nc\n" and outside.read_text() == "precious"


# --- every writer of kdrun goes through kdrun.files --------------------------------------------

KDRUN = Path(__file__).resolve().parents[1] / "kdrun"
HELPERS = ("atomic_path", "atomic_open")
# Calls that write to the path or handle they are given.
PATH_WRITERS = {"save_file", "savefig", "to_csv", "save", "dump", "write_text", "write_bytes"}


def _writes(tree: ast.AST) -> list[tuple[int, str, ast.Call]]:
    """(line, what, call) of every call in ``tree`` that writes a file or may."""
    found = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("open", "fdopen"):
            modes = [a.value for a in call.args[:2] if isinstance(a, ast.Constant)]  # open(p, m), p.open(m)
            modes += [
                k.value.value for k in call.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)
            ]
            flags = ast.unparse(call)
            if any(set(str(m)) & set("wax+") for m in modes) or "O_WRONLY" in flags or "O_CREAT" in flags:
                found.append((call.lineno, ast.unparse(call), call))
        elif name in PATH_WRITERS or name in ("mkstemp", "NamedTemporaryFile", "TemporaryFile", "copyfile"):
            found.append((call.lineno, ast.unparse(call), call))
    return found


def _through_helper(call: ast.Call, tree: ast.AST) -> bool:
    """The call writes to a name bound by ``with atomic_path(...) as name`` / ``atomic_open``."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                ctx = item.context_expr
                helper = isinstance(ctx, ast.Call) and getattr(ctx.func, "id", "") in HELPERS
                inside = any(call is n for n in ast.walk(node))
                if helper and inside and isinstance(item.optional_vars, ast.Name):
                    bound.add(item.optional_vars.id)
    names = {n.id for n in ast.walk(call) if isinstance(n, ast.Name)}
    return bool(bound & names)


def _ours(call: ast.Call, tree: ast.AST) -> bool:
    """``module.save(...)`` of a kdrun module imported by name: its own writes are walked too."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
        return False
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kdrun")
        for alias in node.names
    }
    return func.value.id in imported


# Writes that are not files of kdrun's: the null device, an anonymous probe of a folder.
NOT_FILES = ("os.devnull", "tempfile.TemporaryFile(dir=existing)")
# Writers handed a path by their caller, which is always a temporary from ``atomic_path``.
CALLED_ON_A_TEMPORARY = {"kdrun/export/formats.py": "Format.write (kdrun/export/command.py)"}


def test_every_file_kdrun_writes_goes_through_kdrun_files():
    direct = []
    for path in sorted(KDRUN.rglob("*.py")):
        name = path.relative_to(KDRUN.parent).as_posix()
        if name == "kdrun/files.py" or name in CALLED_ON_A_TEMPORARY:
            continue
        tree = ast.parse(path.read_text())
        for line, text, call in _writes(tree):
            if any(marker in text for marker in NOT_FILES) or _through_helper(call, tree):
                continue
            if text.startswith(("json.dumps", "OmegaConf.to_yaml")) or _ours(call, tree):
                continue
            direct.append(f"{name}:{line}: {text[:100]}")
    assert not direct, "write through kdrun.files (write_atomic, atomic_path, atomic_open):\n" + "\n".join(
        direct
    )


# --- folders handed to kdrun with links already in them ---------------------------------------


def _run_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder from elsewhere (its overrides, a link at train.log and at .hydra/config.yaml)."""
    run, outside = tmp_path / "run", tmp_path / "outside.txt"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- debug=smoke\n- paths.output_root={tmp_path / 'out'}\n")
    _trap(run, "train.log", outside)
    (run / ".hydra" / "config.yaml").symlink_to(outside)
    return run, outside


def test_resume_of_a_run_folder_with_links_is_refused_before_anything_is_written(tmp_path, capsys):
    from kdrun.cli import main

    run, outside = _run_folder(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", f"resume={run}"])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds a symbolic link" in err and "never through a link" in err, err
    assert outside.read_text() == "precious"
    with pytest.raises(SystemExit) as exit_info:  # the same folder named as hydra.run.dir
        main(["train", "debug=smoke", f"hydra.run.dir={run}", f"paths.output_root={tmp_path / 'out'}"])
    assert exit_info.value.code == 2 and outside.read_text() == "precious"


def test_python_api_run_dir_with_links_is_refused(tmp_path):
    import kdrun
    from kdrun.errors import KdrunConfigError

    run, outside = _run_folder(tmp_path)
    with pytest.raises(KdrunConfigError, match="run_dir=.*holds a symbolic link"):
        kdrun.train(["debug=smoke", f"paths.output_root={tmp_path / 'out'}"], run_dir=run)
    assert outside.read_text() == "precious"


def test_regress_out_with_premade_links_is_refused(tmp_path, capsys):
    from kdrun.cli import main

    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    _trap(out, "junit.xml", outside)
    (out / "results.md").symlink_to(outside)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "mnist_hinton.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["regress", str(recipe), "--out", str(out), "--", "debug=smoke"])
    assert exit_info.value.code == 2
    assert "--out=" in capsys.readouterr().err and outside.read_text() == "precious"


def test_export_replaces_planted_temporary_names_instead_of_writing_through_them(
    tmp_path, tiny_data, monkeypatch
):
    """`kdrun export` wrote through fixed temporary names: .MODEL_CARD.md.tmp, .student.torchscript.pt.tmp."""
    import torch
    from conftest import make_cfg

    from kdrun.export import command

    run, outside = tmp_path / "run", tmp_path / "outside.txt"
    for name in (".MODEL_CARD.md.tmp", ".student.torchscript.pt.tmp"):
        _trap(run / "export", name, outside)
    (run / "results.json").write_text("{}")
    cfg = make_cfg("debug=smoke", "measure.batch_sizes=[1]", "measure.min_run_time=0.001")
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4)).eval()
    monkeypatch.setattr(command, "load_run", lambda run_dir, data=None: ({}, cfg, student, tiny_data))
    monkeypatch.setattr(command, "model_card", lambda *args: "card")
    settings = {"formats": ["torchscript"], "atol": 1e-3, "min_top1_agreement": 0.0}
    command.export_run(run, settings)
    assert outside.read_text() == "precious"
    assert (run / "export" / "MODEL_CARD.md").read_text() == "card"
    assert (run / "export" / "student.torchscript.pt").stat().st_size > 0
