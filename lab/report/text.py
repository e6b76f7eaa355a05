"""Everything the report shows that came from a row or a server goes through here: text, code and links, escaped.

A row's message is written by whoever runs the server that sent it (a target's operator, a
trigger's author), and rows merged from other machines may be crafted. So the report never
puts such text into Markdown or HTML as it is:

- `text(s)`: plain text, every character Markdown would read as markup backslash-escaped
  (CommonMark lets any ASCII punctuation be escaped), so `<script>` is text, `**` is two
  asterisks, `[x](javascript:...)` is no link;
- `code(s)`: a code span fenced with more backticks than the text holds (a backtick inside
  cannot close it), its `|` escaped for table cells;
- `link(label, url)`: a link only to http(s) URLs; anything else is shown as text.

`to_html` renders the report's Markdown with markdown-it in CommonMark mode with raw HTML
off: whatever slipped past the helpers is still shown as text, never run, and markdown-it
refuses javascript:, vbscript: and file: links. HTML the lab writes itself (the matrix's
coloured cells) is built with `html.escape` and inserted by `Fragments`.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from markdown_it import MarkdownIt

#: characters that are markup anywhere in a line, and those that are markup at its start (a heading, a list item)
_INLINE = re.compile(r"([\\`*_\[\]<>|~&])")
_LEADING = re.compile(r"^([#+\-.!=])")


def text(value: object) -> str:
    """Plain text in Markdown: newlines become spaces, markup characters are escaped."""
    s = " ".join(str(value).split())
    return _LEADING.sub(r"\\\1", _INLINE.sub(r"\\\1", s))


def code(value: object, limit: int | None = None) -> str:
    """A Markdown code span that no content can close (and that survives a table cell)."""
    s = " ".join(str(value).split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def safe_url(url: object) -> str | None:
    u = str(url).strip()
    parts = urlsplit(u)
    if parts.scheme in ("http", "https") and parts.netloc and not any(c in u for c in "<>\"' \n()"):
        return u
    return None


def link(label: object, url: object) -> str:
    """A Markdown link to an http(s) URL; anything else is shown as text."""
    target = safe_url(url)
    return f"[{text(label)}]({target})" if target else text(label)


def attr(value: object) -> str:
    """A value for an HTML attribute the lab writes itself."""
    return html.escape(str(value), quote=True)


class Fragments:
    """HTML the lab builds itself (escaped with html.escape), kept out of the Markdown and put in after it is
    rendered: the Markdown gets a placeholder paragraph, or its own plain version in report.md."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.markdown: list[str] = []

    def add(self, html_fragment: str, markdown_fallback: str) -> str:
        """The placeholder to put in the Markdown."""
        self.html.append(html_fragment)
        self.markdown.append(markdown_fallback)
        return f"LABFRAGMENT{len(self.html) - 1}X"

    def as_markdown(self, md: str) -> str:
        for i, fallback in enumerate(self.markdown):
            md = md.replace(f"LABFRAGMENT{i}X", fallback)
        return md

    def as_html(self, rendered: str) -> str:
        for i, fragment in enumerate(self.html):
            rendered = rendered.replace(f"<p>LABFRAGMENT{i}X</p>", fragment).replace(f"LABFRAGMENT{i}X", fragment)
        return rendered


_RENDERER = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def to_html(md: str) -> str:
    """The report's Markdown as HTML: raw HTML in it is shown as text, unsafe links are not links."""
    return _RENDERER.render(md)
