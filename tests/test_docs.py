"""The docs speak of the product, their links resolve and their tables render."""

import re

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TEXTS = DOCS + sorted((REPO / "kdrun" / "conf").rglob("*.yaml"))
# How the product was made is not the product: no sessions, issue numbers, seed texts, outside paths.
FORBIDDEN = re.compile(r"earlier session|\bissue \d+|\bthis issue\b|\bseed 0\d\d\b|/work/|/home/|/tmp/", re.I)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_docs_name_only_the_product():
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in TEXTS
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_relative_links_resolve():
    broken = [
        f"{path.relative_to(REPO)}: {target}"
        for path in DOCS
        for target in LINK.findall(path.read_text())
        if "://" not in target and not (path.parent / target).exists()
    ]
    assert not broken, "\n".join(broken)


def test_tables_have_no_blank_lines_inside():
    """A blank line ends a Markdown table: the rows after it render as text."""
    for path in DOCS:
        lines = path.read_text().splitlines()
        for n in range(1, len(lines) - 1):
            if not lines[n].strip():
                assert not (lines[n - 1].startswith("|") and lines[n + 1].startswith("|")), (
                    f"{path.relative_to(REPO)}:{n + 1}: blank line inside a table"
                )


def test_readme_reaches_every_doc_and_resume():
    readme = (REPO / "README.md").read_text()
    for doc in [*sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "docs" / "cli").glob("*.md"))]:
        assert str(doc.relative_to(REPO)) in readme, f"README does not link {doc.relative_to(REPO)}"
    assert "resume=" in readme
