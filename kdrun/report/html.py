"""report.html: the report in one self-contained file (tables, images inline, each run's config),
which opens offline in any browser: no scripts, no links to fetch."""

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; box-sizing: border-box; border: 1px solid #eee; }
pre { background: #f8f8f8; padding: 8px; overflow-x: auto; }
details { margin: 4px 0; } summary { cursor: pointer; } .note { color: #555; }
"""


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]], numeric_from: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if i >= numeric_from else ''}>{html.escape(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(title: str, header: list[str], rows: list[list[str]], note: str, image: Path) -> str:
    """A titled part of the page: its figure (inline), its table, its note."""
    anchor = html.escape(image.stem)
    return "\n".join(
        [
            f'<h2 id="{anchor}">{html.escape(title)}</h2>',
            _image(image, title),
            _table(header, rows, numeric_from=1),
            f'<p class="note">{html.escape(note)}</p>',
        ]
    )


def render(
    title: str,
    header: list[str],
    rows: list[list[str]],
    note: str,
    images: dict[str, Path],
    runs: list[tuple[Path, dict[str, Any]]],
    sections: Sequence[str] = (),
) -> str:
    """The page: summary table, note, images (inline), the extra sections, one folded part per run."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<h2 id="summary">Summary</h2>',
        _table(header, rows, numeric_from=header.index("n") if "n" in header else len(header)),
        f'<p class="note">{html.escape(note)}</p>',
    ]
    for name, path in images.items():
        parts += [f'<h2 id="{html.escape(path.stem)}">{html.escape(name)}</h2>', _image(path, name)]
    parts += list(sections)
    parts.append(f'<h2 id="runs">Runs ({len(runs)})</h2>')
    for run_dir, results in runs:
        cfg = results.get("config", {})
        status = results.get("status", "?")
        line = f"{run_dir.name} · {status}"
        if status == "ok":
            line += (
                f" · student top-1 {100 * results['student']['top1']:.2f}%"
                f" · KD gain {100 * results['deltas']['kd_gain_top1']:+.2f}"
            )
            se = results["deltas"].get("kd_gain_top1_se")
            line += (f" ± {100 * se:.2f}" if se is not None else "") + " pts"
        elif results.get("error"):
            line += f" · {results['error']}"
        text = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
        parts.append(
            f'<details class="run"><summary>{html.escape(line)}</summary>'
            f"<pre>{html.escape(text)}</pre></details>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
