"""The package's shape: no import cycle, and the dependency picture in docs/architecture.md is true.

``python tests/test_architecture.py`` prints the picture to paste into the doc after a change.
"""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdrun"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- dependencies: begin -->", "<!-- dependencies: end -->"


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the kdrun modules it imports, wherever the import stands (functions, TYPE_CHECKING)."""
    paths = {_module(p, root): p for p in (root / "kdrun").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for me, path in paths.items():
        package = me if path.name == "__init__.py" else me.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in paths:
                    name = name.rpartition(".")[0]
                if name and name != me and not me.startswith(name + "."):
                    found.add(name)
        graph[me] = found
    return graph


def _unit(module: str) -> str:
    """``kdrun.train.phases`` -> ``train/``; ``kdrun.train.validate`` -> ``config``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "kdrun"
    is_package = (PACKAGE / parts[1]).is_dir()
    return parts[1] + "/" if is_package else parts[1]


def unit_graph() -> dict[str, set[str]]:
    """The same graph between the top-level modules and packages of kdrun."""
    units: dict[str, set[str]] = {}
    for module, imported in import_graph().items():
        me = _unit(module)
        units.setdefault(me, set()).update(_unit(m) for m in imported if _unit(m) != me)
    units.pop("kdrun", None)
    for deps in units.values():
        deps.discard("kdrun")
    return units


def picture() -> str:
    """One line per module or package, lowest first: what it imports of ours."""
    units = unit_graph()
    order = list(TopologicalSorter(units).static_order())
    level: dict[str, int] = {}
    for unit in order:
        level[unit] = 1 + max((level[d] for d in units[unit]), default=-1)
    rows = sorted(units, key=lambda u: (level[u], u))
    width = max(map(len, rows))
    return "\n".join(
        f"{level[u]:>2}  {u:<{width}}  {', '.join(sorted(units[u], key=lambda d: (-level[d], d))) or '-'}"
        for u in rows
    )


def test_no_import_cycle_in_kdrun():
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_imports_inside_functions_count(tmp_path):
    (tmp_path / "kdrun").mkdir()
    (tmp_path / "kdrun" / "a.py").write_text("from kdrun import b\n")
    (tmp_path / "kdrun" / "b.py").write_text("def f():\n    from kdrun.a import g\n")
    assert import_graph(tmp_path) == {"kdrun.a": {"kdrun.b"}, "kdrun.b": {"kdrun.a"}}


def test_the_documented_dependency_picture_is_the_real_one():
    text = DOC.read_text()
    documented = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip().strip("`").strip()
    stale = "docs/architecture.md is stale: paste `python tests/test_architecture.py`"
    assert documented == picture().strip(), stale


MAX_TOP_MODULES = 8  # loose modules beside the packages, __init__ and __main__ aside


def top_modules(root: Path = PACKAGE) -> list[str]:
    """The modules at the top of the package: entry points and shared leaves, not concerns."""
    return sorted(p.name for p in root.glob("*.py") if p.stem not in ("__init__", "__main__"))


def test_the_top_of_the_package_holds_few_modules_the_rest_is_grouped_by_concern(tmp_path):
    assert len(top_modules()) <= MAX_TOP_MODULES, f"group these into packages: {top_modules()}"
    (tmp_path / "kdrun").mkdir()
    for name in ["__init__", "__main__", *(f"m{i}" for i in range(MAX_TOP_MODULES + 1))]:
        (tmp_path / "kdrun" / f"{name}.py").write_text("")
    assert len(top_modules(tmp_path / "kdrun")) == MAX_TOP_MODULES + 1


MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60  # the whole definition: decorators, signature, docstring and body


def long_code(root: Path = PACKAGE) -> list[str]:
    """Files over ``MAX_FILE_LINES`` lines and functions over ``MAX_FUNCTION_LINES``, counted from the
    first decorator (or ``def``) to the last line: a long signature or docstring is read too."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(root.parent)
        if (lines := len(text.splitlines())) > MAX_FILE_LINES:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno} {node.name}(): {length} lines")
    return found


def test_no_file_or_function_is_too_long_to_read_at_once():
    too_long = long_code()
    assert not too_long, (
        f"split these (<= {MAX_FILE_LINES} lines a file, {MAX_FUNCTION_LINES} a function): {too_long}"
    )


def test_the_length_check_counts_the_whole_definition_of_nested_and_async_functions(tmp_path):
    (tmp_path / "kdrun").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))  # def + body: the most allowed
    inner = "    async def inner():\n" + body.replace("    ", "        ") + "        y = 0\n"
    # A short body under a long signature and docstring is long to read all the same.
    signature = "def wordy(\n" + "".join(f"    a{i}: int,\n" for i in range(30)) + "):\n"
    docstring = '    """Doc.\n' + "    more\n" * 28 + '    """\n'
    decorated = "@staticmethod\n" + "def decorated():\n" + body
    wordy = f"{signature}{docstring}    return 1\n"
    (tmp_path / "kdrun" / "a.py").write_text(
        f"def ok():\n{body}\ndef outer():\n{inner}    return inner\n{wordy}{decorated}"
    )
    (tmp_path / "kdrun" / "b.py").write_text("x = 1\n" * (MAX_FILE_LINES + 1))
    assert long_code(tmp_path / "kdrun") == [
        "kdrun/a.py:62 outer(): 63 lines",
        "kdrun/a.py:125 wordy(): 63 lines",  # a 1-line body: the signature and docstring count
        "kdrun/a.py:189 decorated(): 61 lines",  # the decorator counts
        "kdrun/a.py:63 inner(): 61 lines",
        "kdrun/b.py: 301 lines",
    ]


if __name__ == "__main__":
    print(picture())
