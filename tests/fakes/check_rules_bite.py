"""Mutation check of the Weaviate fake: take out one server rule at a time and confirm
tests/fakes/test_weaviate_rules.py fails each time. Run from the checkout root:
`.venv/bin/python -m tests.fakes.check_rules_bite [RULE...]` (a few minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

R = "tests/fakes/weaviate_rules.py"
G = "tests/fakes/weaviate_grpc.py"
# (rule, file, the code that enforces it, what it becomes without the rule)
M = [
    ("qmr offset+limit", R, "    if offset + limit > limits.query_maximum_results:",
     "    if False:"),
    ("delete cap", R, "    return min(matches, limits.query_maximum_results)",
     "    return matches"),
    ("delete matches uncapped", G, "matches=len(hits),", "matches=len(todo),"),
    ("field trim", R, "    return [value.strip()]", "    return [value]"),
    ("unicode words", R, '        if unicodedata.category(ch)[0] in "LN":',
     "        if ch.isascii() and ch.isalnum():"),
    ("stopwords", R, "if t not in STOPWORDS_EN)", ")"),
    ("dup boost", R, "    return Counter(t for t in word_terms(query) if t not in STOPWORDS_EN)",
     "    return Counter({t: 1 for t in word_terms(query) if t not in STOPWORDS_EN})"),
    ("hybrid pool", R, "    return max(limits.hybrid_maximum_results, limit)",
     "    return limits.query_maximum_results"),
    ("alpha 0", G, "col.near(objs, target, vec)[:pool] if alpha > 0 else []",
     "col.near(objs, target, vec)[:pool]"),
    ("alpha 1", G, "if alpha < 1 and h.query else []", "if h.query else []"),
    ("class name", R, "    if not CLASS_NAME.match(name):", "    if False:"),
    ("filterable", R, '    if name == "_id" or prop is None:\n        return', "    return"),
    ("searchable", R, '    if prop is not None and prop.get("indexSearchable"):\n        return',
     "    return"),
    ("autoschema off", G, "            if not self.fake.limits.autoschema:",
     "            if False:"),
    ("tenant", R, '    if (schema.get("multiTenancyConfig") or {}).get("enabled"):',
     "    if False:"),
    ("api key", R, "    if not limits.api_key:\n        return", "    return"),
    ("grpc auth", G, '            check_api_key(md.get("authorization"), self.fake.limits)',
     "            pass"),
]


def main(only: list[str]) -> int:
    survived = []
    for name, path, old, new in M:
        if only and name not in only:
            continue
        p = Path(path)
        orig = p.read_text()
        assert orig.count(old) == 1, (name, old)
        p.write_text(orig.replace(old, new))
        try:
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "tests/fakes/test_weaviate_rules.py"],
                               capture_output=True, text=True, timeout=600)
        finally:
            p.write_text(orig)
        failed = [line.split("::")[1].split(" ")[0] for line in r.stdout.splitlines()
                  if line.startswith("FAILED")]
        print(f"{name:26s} failing tests: {failed}", flush=True)
        if not failed:
            survived.append(name)
    print(f"rules no test notices: {survived}" if survived else "every rule is tested")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
