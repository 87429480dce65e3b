"""Boilerplate out: page chrome, permalink signs and running headers never become chunks."""

from __future__ import annotations

from freshrag.clean import clean_elements, clean_html, clean_title
from freshrag.model import Element, Fingerprint, Item
from freshrag.parse import UnstructuredParser

SPHINX = b"""<!DOCTYPE html><html><head><title>json</title><script>var x = 1;</script></head>
<body>
<nav class="nav-content" role="navigation"><a href="#">Theme</a> Auto Light Dark</nav>
<div class="related" role="navigation" aria-label="related navigation"><h3>Navigation</h3>
<ul><li><a href="genindex.html">index</a></li><li><a href="py-modindex.html">modules</a> |</li>
<li><a href="prev.html">previous</a> |</li><li>Python &#187;</li></ul></div>
<div class="document"><div class="documentwrapper"><div class="bodywrapper">
<div class="body" role="main">
<section id="json"><h1>json &#8212; JSON encoder and decoder<a class="headerlink"
href="#json" title="Permalink to this heading">&#182;</a></h1>
<p>JSON (JavaScript Object Notation) is a lightweight data interchange format inspired by
JavaScript object literal syntax, and the json module encodes and decodes it.</p>
<p>Compact encoding:</p>
<pre>json.dumps([1, 2, 3], separators=(',', ':'))</pre>
</section></div></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation">
<h3>Previous topic</h3><p><a href="prev.html">email.iterators</a></p>
<h3>This Page</h3><ul><li><a href="bugs.html">Report a Bug</a></li></ul></div></div>
<footer><div class="footer">&#169; Copyright 2001-2026, Python Software Foundation.</div></footer>
</body></html>"""


def parse(data: bytes, drop: bool = True) -> list[Element]:
    item = Item(key="json.html", data=data, fingerprint=Fingerprint(0, len(data)),
                modified_at=0.0, location="json.html", filename="json.html")
    return UnstructuredParser(drop_boilerplate=drop).parse(item)


def test_sphinx_navigation_sidebar_and_footer_are_dropped() -> None:
    text = "\n".join(e.text for e in parse(SPHINX))
    for chrome in ("Navigation", "previous", "modules", "Previous topic", "Report a Bug",
                   "Copyright", "Theme", "var x"):
        assert chrome not in text, chrome
    assert "lightweight data interchange format" in text and "Compact encoding:" in text
    titles = [e.text for e in parse(SPHINX) if e.kind == "title"]
    assert titles == ["json — JSON encoder and decoder"]


def test_cleaning_can_be_turned_off() -> None:
    text = "\n".join(e.text for e in parse(SPHINX, drop=False))
    assert "Previous topic" in text


def test_an_articles_own_header_is_content() -> None:
    html = ("<html><body><header>Site menu Home About</header><main><article><header>"
            "<h1>Release notes</h1></header><p>Version two adds the harbour ferry.</p>"
            "</article></main><footer>Contact us</footer></body></html>")
    out = clean_html(html)
    assert "Release notes" in out and "harbour ferry" in out
    assert "Site menu" not in out and "Contact us" not in out


def test_a_page_that_is_all_chrome_is_left_alone() -> None:
    html = "<html><body><nav><a href='a'>Only links here</a></nav></body></html>"
    assert clean_html(html) == html
    assert clean_html("") == ""


def test_permalink_signs_are_stripped_from_titles() -> None:
    for raw in ("Basic Usage¶", "Basic Usage #", "Basic Usage §", "Basic Usage\u00a0¶"):
        assert clean_title(raw) == "Basic Usage"
    assert clean_title("¶") == "¶"


def test_running_headers_and_page_numbers_of_a_paged_document_are_dropped() -> None:
    els = []
    for page in range(1, 6):
        els.append(Element("ACME Corp — Internal handbook", page=page))
        els += [Element(f"Section {page}.{n} starts here with its own words.", page=page)
                for n in range(1, 4)]
        els.append(Element(f"Page {page} of 5", page=page))
    out = [e.text for e in clean_elements(els)]
    # The first and last section lines sit at the page's edges too, with numbers: kept, since
    # their text differs.
    assert out == [f"Section {p}.{n} starts here with its own words." for p in range(1, 6)
                   for n in range(1, 4)]


def test_a_short_document_keeps_repeated_lines() -> None:
    els = [Element("Total", page=1), Element("Total", page=2)]
    assert len(clean_elements(els)) == 2
