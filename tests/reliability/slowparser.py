"""A parser for the parse-isolation tests: hangs on '*hang*' files, dies on '*crash*' files."""

from __future__ import annotations

import os
import time

from freshrag.model import Element, Item
from freshrag.parse import UnstructuredParser


class HangParser(UnstructuredParser):
    def parse(self, item: Item) -> list[Element]:
        if "hang" in item.key:
            time.sleep(3600)
        if "crash" in item.key:
            os.abort()
        return super().parse(item)
