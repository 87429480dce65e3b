"""An offline spaCy pipeline for unstructured's text heuristics, so it never downloads a model."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import re
import sys
import types
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# unstructured asks the tagger one question: does a short line contain a verb (then it is
# narrative text, not a title)? A lexicon and two suffix rules answer it well enough.
_VERBS = frozenset("""
am is are was were be been being has have had having do does did done can could will would
shall should may might must need let make makes made get gets got go goes went see sees saw
use uses run runs take takes took give gives gave find finds found know knows knew think
thinks thought say says said show shows keep keeps set sets put puts come comes came become
becomes became add adds remove removes create creates return returns call calls read reads
write writes start starts stop stops open opens close closes change changes work works
include includes contain contains provide provides support supports allow allows require
requires build builds send sends help helps try tries want wants like likes look looks seem
seems mean means tell tells leave leaves feel feels bring brings hold holds stand stands
turn turns move moves live lives believe believes happen happens pay pays meet meets lead
leads understand understands follow follows stay stays fall falls cut cuts reach reaches
""".split())
_VERB_SUFFIX = re.compile(r"[a-z]{3,}(ed|ing)$")
_STATE: dict[str, Any] = {}


def _tag_component(doc: Any) -> Any:
    for token in doc:
        low = token.lower_
        token.tag_ = "VB" if low in _VERBS or _VERB_SUFFIX.match(low) else "NN"
    return doc


@contextlib.contextmanager
def _without_torch() -> Iterator[None]:
    """Imports inside see torch as not installed. spaCy's thinc imports torch (~250 MB of
    memory) only to offer it as an optional backend, which neither pipeline here uses."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` -> ImportError
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


def offline_pipeline() -> Any:
    """en_core_web_sm when installed as a package; otherwise a blank English pipeline with a
    sentencizer and a lexical verb tagger. Never touches the network."""
    with _without_torch():
        import spacy
    from spacy.language import Language

    if spacy.util.is_package("en_core_web_sm"):
        return spacy.load("en_core_web_sm", exclude=["ner", "lemmatizer", "attribute_ruler"])
    if "freshrag_verbs" not in Language.factories:
        Language.component("freshrag_verbs", func=_tag_component)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("freshrag_verbs")
    return nlp


class SortedWords:
    """`word in words` for the lines of a word file, as exact as a set of them, in ~8 MB, read
    on the first lookup: unstructured holds its 427,000 English words as a set and a list of
    str objects (~55 MB of a parse process), and consults them only with its language checks
    on (UNSTRUCTURED_LANGUAGE_CHECKS=true)."""

    def __init__(self, path: Path):
        self.path = path
        self._text = ""
        self._starts: array[int] | None = None

    def _load(self) -> array[int]:
        if self._starts is None:
            words = sorted(set(self.path.read_text().split("\n")))
            self._text = "\n".join(words) + "\n"
            self._starts = array("I", itertools.accumulate(
                (len(w) + 1 for w in words[:-1]), initial=0))
        return self._starts

    def __len__(self) -> int:
        return len(self._load())

    def __getitem__(self, i: int) -> str:
        start = self._load()[i]
        return self._text[start:self._text.index("\n", start)]

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        i = bisect.bisect_left(self, word)  # type: ignore[call-overload]
        return i < len(self) and self[i] == word


def _compact_english_words() -> None:
    """unstructured.nlp.english_words with its word set as a SortedWords (same members), put in
    place before unstructured imports it; left alone if its word file is not where it was."""
    import unstructured.nlp

    name = "unstructured.nlp.english_words"
    path = Path(unstructured.nlp.__file__).parent / "english-words.txt"
    if name in sys.modules or not path.is_file():
        return
    module = types.ModuleType(name)
    module.ENGLISH_WORDS_FILE = str(path)  # type: ignore[attr-defined]
    module.ADDITIONAL_ENGLISH_WORDS = []  # type: ignore[attr-defined]
    module.ENGLISH_WORDS = SortedWords(path)  # type: ignore[attr-defined]
    sys.modules[name] = module
    unstructured.nlp.english_words = module  # type: ignore[attr-defined]


def install() -> None:
    """Point unstructured's tokenizer at the offline pipeline (idempotent).

    unstructured loads `en_core_web_sm` lazily and, when it is missing, downloads it from the
    internet (blocking up to 120 s, then failing). We replace the loader it calls.
    """
    if _STATE.get("installed"):
        return
    # unstructured prints a promotional notice to stdout (it would corrupt `--json` output)
    # and pings an analytics endpoint on import: both off.
    for name in ("UNSTRUCTURED_DISABLE_NOTICE", "SCARF_NO_ANALYTICS", "DO_NOT_TRACK"):
        os.environ.setdefault(name, "1")
    with _without_torch():
        import spacy  # noqa: F401  (imported first under the guard: thinc then skips torch)
        _compact_english_words()
        from unstructured.nlp import tokenize

    loader = getattr(tokenize, "_load_spacy_model", None)
    getter = getattr(tokenize, "_get_nlp", None)
    if loader is None or getter is None:
        raise RuntimeError(
            "unstructured.nlp.tokenize no longer has _load_spacy_model/_get_nlp: freshrag cannot "
            "keep unstructured offline with this version; pin unstructured==0.27.32"
        )
    tokenize._load_spacy_model = offline_pipeline
    getter.cache_clear()
    _STATE["installed"] = True


def installed_loader_is_ours() -> bool:
    from unstructured.nlp import tokenize

    return getattr(tokenize, "_load_spacy_model", None) is offline_pipeline
