"""`pooler-lab publish`: a static site from one run or many, one page a person can open from disk or host anywhere.

The page (index.html) is rendered by Jinja2 with autoescaping on, so every text from a row (an error message a
target's server wrote, a rule's reason) reaches it as text, never markup. Its data also goes beside it: data.json
(the same document, for scripts and CI) and data.js (that document as a JavaScript value, because a page opened
from disk may not fetch a file next to it). app.js adds the search box: paste an error message, get the cause,
the fix for each configuration, its price and the cells that show both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from lab.publish.model import site_model
from lab.report.data import Rows, load_rows
from lab.results.rows import Row, read_rows

STATIC = Path(__file__).resolve().parent / "static"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("lab.publish", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["kind_class"] = lambda kind: {"ok": "ok", "wrong-result": "wrong"}.get(str(kind), "fail")
    return env


def script_value(value: Any) -> str:
    """A JSON document that is safe inside a <script> element: no `</script>`, no `<!--` can end or bend it."""
    return (
        json.dumps(value, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def publish(sources: list[Path], out_dir: Path) -> Path:
    """Write the site for the rows of `sources` into `out_dir`; returns index.html."""
    data: Rows = load_rows(sources)
    every: list[Row] = [row for path in sources for row in read_rows(path)]
    model = site_model(data, every)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data.json").write_text(json.dumps(model, indent=1, ensure_ascii=False))
    (out_dir / "data.js").write_text(f"window.LAB = {script_value(model)};\n")
    for asset in STATIC.iterdir():
        shutil.copyfile(asset, out_dir / asset.name)
    cells = {c["anchor"]: c for c in model["cells"]}
    grid: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for c in model["cells"]:
        grid.setdefault(f"{c['experiment']}|{c['scenario']}", {}).setdefault(c["client"], {})[c["topology"]] = c
    html = (
        _environment()
        .get_template("index.html.j2")
        .render(model=model, grid=grid, cells=cells, topologies=list(model["topologies"].values()))
    )
    index = out_dir / "index.html"
    index.write_text(html)
    return index
