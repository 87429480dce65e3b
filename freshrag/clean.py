"""Boilerplate out: page chrome removed from HTML before partitioning, and from elements after."""

from __future__ import annotations

import re
from collections.abc import Sequence

from freshrag.model import Element

# Bump when the same bytes would clean differently (sync then re-chunks, see chunk.py).
CLEAN_VERSION = "1"
# HTML that is navigation or page chrome by its tag, ARIA role or (documentation themes:
# Sphinx, Read the Docs, MkDocs, Furo) class.
_CHROME_TAGS = {"nav", "aside", "script", "style", "noscript", "template", "button", "form"}
_CHROME_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
_CHROME_CLASSES = {
    "related", "sphinxsidebar", "sphinxsidebarwrapper", "footer", "headerlink", "sidebar",
    "breadcrumb", "breadcrumbs", "wy-nav-side", "wy-breadcrumbs", "rst-footer-buttons",
    "rst-versions", "md-header", "md-footer", "md-sidebar", "md-tabs", "navbar", "skip-link",
    "mobile-nav", "sidebar-drawer", "toc-drawer", "prev-next-area", "bd-sidebar",
    "bd-header", "bd-footer", "copybtn", "headerlink-anchor",
}
_CONTENT_ANCESTORS = {"article", "main"}
# Permalink signs Sphinx, MkDocs and GitHub put after a heading.
_PERMALINK = re.compile(r"[\s\u00b6\u00a7#\U0001f517\uf0c1]+$")
_DIGITS = re.compile(r"\d+")


def _is_chrome(el: object) -> bool:
    tag = getattr(el, "tag", None)
    if not isinstance(tag, str):
        return False
    tag = tag.lower()
    get = el.get  # type: ignore[attr-defined]
    if tag in _CHROME_TAGS:
        return True
    if (get("role") or "").lower() in _CHROME_ROLES:
        return True
    classes = set((get("class") or "").lower().split())
    if classes & _CHROME_CLASSES:
        return True
    if tag in {"header", "footer"}:
        # An <article>'s own header holds its title: keep headers inside content.
        return not any(getattr(a, "tag", "") in _CONTENT_ANCESTORS
                       or (a.get("role") or "") == "main" for a in el.iterancestors())  # type: ignore[attr-defined]
    return False


def clean_html(html: str) -> str:
    """The page without navigation, headers, footers, sidebars and permalink anchors; the
    page unchanged when it cannot be parsed or nothing but chrome would be left."""
    try:
        import lxml.html

        root = lxml.html.document_fromstring(html)
    except Exception:  # lxml's ParserError and friends: not HTML it can read; partition as is
        return html
    doomed = [el for el in root.iter() if _is_chrome(el)]
    for el in doomed:
        parent = el.getparent()
        if parent is None:
            continue
        tail = el.tail
        parent.remove(el)
        if tail and tail.strip():  # text after the element belongs to the parent
            prev = parent[-1] if len(parent) else None
            if prev is not None:
                prev.tail = (prev.tail or "") + tail
            else:
                parent.text = (parent.text or "") + tail
    body = root.find("body")
    if body is None or not (body.text_content() or "").strip():
        return html
    return lxml.html.tostring(root, encoding="unicode")


def clean_title(text: str) -> str:
    return _PERMALINK.sub("", text).strip() or text.strip()


def _edges(elements: Sequence[Element], depth: int = 2) -> set[int]:
    """Indexes of the first and last `depth` elements of each page."""
    by_page: dict[int, list[int]] = {}
    for i, el in enumerate(elements):
        if el.page is not None:
            by_page.setdefault(el.page, []).append(i)
    return {i for idx in by_page.values() for i in (*idx[:depth], *idx[-depth:])}


def _line_key(el: Element) -> str:
    """The line as compared across pages: numbers ignored only in short lines ("Page 3 of
    9", "- 12 -"), so numbered body lines ("Section 2.1 ...") never look alike."""
    text = el.text.strip().lower()
    masked = _DIGITS.sub("#", text)
    return masked if masked != text and len(masked.split()) <= 4 else text


def drop_repeated_page_furniture(elements: Sequence[Element]) -> list[Element]:
    """Lines that repeat at the top or bottom of most pages of a paged document (running
    headers and footers, "Page 3 of 9") are furniture: a short text among a page's first or
    last two elements on at least 3 pages and half of them is dropped."""
    pages = {el.page for el in elements if el.page is not None}
    if len(pages) < 3:
        return list(elements)
    edges = _edges(elements)
    seen: dict[str, set[int]] = {}
    for i in edges:
        el = elements[i]
        if el.page is not None and len(el.text.split()) <= 15:
            seen.setdefault(_line_key(el), set()).add(el.page)
    need = max(3, (len(pages) + 1) // 2)
    furniture = {k for k, on in seen.items() if len(on) >= need}
    return [el for i, el in enumerate(elements)
            if i not in edges or _line_key(el) not in furniture]


def clean_elements(elements: Sequence[Element]) -> list[Element]:
    """Titles without permalink signs; repeated page headers and footers gone."""
    out = [Element(clean_title(el.text), el.kind, el.page, el.depth) if el.kind == "title"
           else el for el in elements]
    return drop_repeated_page_furniture(out)
