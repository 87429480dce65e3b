"""The quality bench's corpora: Sphinx manuals Debian ships, judged by their own FAQs' links."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from posixpath import normpath

# Pages that are tables of contents, indexes or search forms, never content.
NOT_CONTENT = re.compile(r"(^|/)(_[^/]*/.*|index\.html|contents\.html|genindex(-\w+)?\.html|"
                         r"search\.html|py-modindex\.html|copyright\.html)$")
DISTRACTOR_EVERY = 8


@dataclass(frozen=True)
class Manual:
    """One HTML manual: its FAQ under `root/faq`, the pages indexed under `root/pages`."""

    name: str  # the folder its pages are copied to inside the corpus ("" = the top)
    root: Path
    pages: str = ""  # only pages under this folder of the manual ("" = all of it)
    no_distractors: str = ""  # a regex: pages only indexed when an answer links to them

    def key(self, rel: str) -> str:
        """The document key `freshrag` gives the copy of the manual's page `rel`."""
        inner = rel[len(self.pages) + 1:] if self.pages else rel
        return f"{self.name}/{inner}" if self.name else inner

    def indexable(self, rel: str) -> bool:
        under = not self.pages or rel.startswith(self.pages + "/")
        return under and not rel.startswith("faq/") and not NOT_CONTENT.search(rel)

    def judgments(self) -> list[tuple[str, set[str]]]:
        """(question, pages its answer links to) for every FAQ question with such links: the
        innermost sections (`<section>` or Sphinx's older `<div class="section">`) whose title
        ends in "?"."""
        import lxml.html

        out: list[tuple[str, set[str]]] = []
        for page in sorted((self.root / "faq").glob("*.html")):
            root = lxml.html.parse(str(page)).getroot()
            for section in filter(_is_section, root.iter()):
                if any(_is_section(e) for e in section.iterdescendants()):
                    continue  # innermost sections only: one question each
                head = next((e for e in section if e.tag in ("h1", "h2", "h3", "h4")), None)
                if head is None:
                    continue
                question = re.sub(r"\s+", " ", head.text_content()).strip().rstrip("¶").strip()
                links = set()
                for a in section.iter("a"):
                    href = (a.get("href") or "").split("#", 1)[0]
                    if not href.endswith(".html") or ":" in href:
                        continue
                    rel = normpath("faq/" + href)
                    if self.indexable(rel) and (self.root / rel).is_file():
                        links.add(rel)
                if question.endswith("?") and links:
                    out.append((question, links))
        return out


def _is_section(e: object) -> bool:
    tag, get = getattr(e, "tag", None), getattr(e, "get", None)
    return tag == "section" or (tag == "div" and get is not None
                                and "section" in (get("class") or "").split())


@dataclass(frozen=True)
class Corpus:
    """Manuals indexed together as one `docs` folder source; judgments keyed by document."""

    name: str
    packages: str  # the Debian packages that ship it
    manuals: tuple[Manual, ...]
    cache: Path  # its folder and freshrag home, kept between runs (embedding takes minutes)

    def judgments(self) -> list[tuple[str, set[str]]]:
        return [(q, {m.key(r) for r in rel}) for m in self.manuals for q, rel in m.judgments()]

    def pages(self) -> dict[str, Path]:
        """Document key → page: every page an answer links to, and every DISTRACTOR_EVERY-th
        other content page of each manual."""
        out: dict[str, Path] = {}
        for m in self.manuals:
            wanted = {r for _, rel in m.judgments() for r in rel}
            skip = re.compile(m.no_distractors) if m.no_distractors else None
            others = sorted(
                rel for p in m.root.rglob("*.html")
                if (rel := p.relative_to(m.root).as_posix()) not in wanted
                and m.indexable(rel) and not (skip and skip.search(rel)))
            for rel in sorted(wanted | set(others[::DISTRACTOR_EVERY])):
                out[m.key(rel)] = m.root / rel
        return out

    def missing(self) -> str | None:
        absent = [m.root for m in self.manuals if not (m.root / "faq").is_dir()]
        return (f"{', '.join(map(str, absent))} not found; install it with "
                f"`apt-get install {self.packages}`") if absent else None

    def folder(self) -> Path:
        """The corpus copied to `cache/docs` (pages no longer in it removed)."""
        folder = self.cache / "docs"
        pages = self.pages()
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [p for p in folder.rglob("*") if p.is_file()]:
            if stale.relative_to(folder).as_posix() not in pages:
                stale.unlink()
        for key, page in pages.items():
            target = folder / key
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(page, target)
        return folder


TMP = Path(tempfile.gettempdir())
PYTHON = Corpus(
    "Python 3.11 library reference, Python FAQ judgments", "python3.11-doc",
    (Manual("", Path("/usr/share/doc/python3.11-doc/html"), pages="library"),),
    TMP / "freshrag-bench-quality")
# The second corpus: two other projects' manuals, written and judged by other people. The
# fusion rule and its defaults were chosen on this one (bench/fusion_sweep.py), not on PYTHON.
DJANGO_SQLALCHEMY = Corpus(
    "Django 3.2 + SQLAlchemy 1.4 manuals, their FAQs' judgments",
    "python-django-doc python-sqlalchemy-doc",
    (Manual("django", Path("/usr/share/doc/python-django-doc/html"),
            no_distractors=r"^(releases|internals)/"),
     Manual("sqlalchemy", Path("/usr/share/doc/python-sqlalchemy-doc/html"),
            no_distractors=r"^changelog/")),
    TMP / "freshrag-bench-quality-django-sqlalchemy")
CORPORA = {"python": PYTHON, "django+sqlalchemy": DJANGO_SQLALCHEMY}
