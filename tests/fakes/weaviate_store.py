"""TEST DOUBLE: the in-memory model behind the Weaviate fake (objects, filters, BM25, vectors)."""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from weaviate.proto.v1 import base_pb2

from tests.fakes.weaviate_rules import (
    Refused,
    bm25_query_terms,
    check_filterable,
    check_searchable,
    class_name,
    terms,
    word_terms,
)

_OP = base_pb2.Filters

# What a real server fills in when a class is created with only the fields the client sends;
# the client's config parser reads them back.
HNSW_DEFAULTS: dict[str, Any] = {
    "skip": False, "cleanupIntervalSeconds": 300, "maxConnections": 32, "efConstruction": 128,
    "ef": -1, "dynamicEfMin": 100, "dynamicEfMax": 500, "dynamicEfFactor": 8,
    "vectorCacheMaxObjects": 1000000000000, "flatSearchCutoff": 40000, "distance": "cosine",
    "filterStrategy": "sweeping", "pq": {"enabled": False}, "bq": {"enabled": False},
    "sq": {"enabled": False}, "multivector": {"enabled": False},
}
CLASS_DEFAULTS: dict[str, Any] = {
    "invertedIndexConfig": {"bm25": {"b": 0.75, "k1": 1.2}, "cleanupIntervalSeconds": 60,
                            "stopwords": {"preset": "en", "additions": None, "removals": None}},
    "multiTenancyConfig": {"enabled": False, "autoTenantCreation": False,
                           "autoTenantActivation": False},
    "replicationConfig": {"factor": 1, "asyncEnabled": False,
                          "deletionStrategy": "NoAutomatedResolution"},
    "shardingConfig": {"virtualPerPhysical": 128, "desiredCount": 1, "actualCount": 1,
                       "desiredVirtualCount": 128, "actualVirtualCount": 128, "key": "_id",
                       "strategy": "hash", "function": "murmur3"},
}


def with_defaults(cls: dict[str, Any]) -> dict[str, Any]:
    out = {**CLASS_DEFAULTS, **cls}
    out.setdefault("vectorizer", "none")
    for prop in out.get("properties", []):
        text = prop["dataType"][0] in ("text", "text[]")
        prop.setdefault("tokenization", "word" if text else None)
        prop.setdefault("indexFilterable", True)
        prop.setdefault("indexSearchable", text)
        prop.setdefault("indexRangeFilters", False)
    for vec in out.get("vectorConfig", {}).values():
        vec.setdefault("vectorIndexType", "hnsw")
        vec["vectorIndexConfig"] = {**HNSW_DEFAULTS, **(vec.get("vectorIndexConfig") or {})}
    return out


@dataclass
class Obj:
    id: str
    props: dict[str, Any]
    vectors: dict[str, list[float]] = field(default_factory=dict)


class Collection:
    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        self.objects: dict[str, Obj] = {}

    def types(self) -> dict[str, str]:
        return {p["name"]: p["dataType"][0] for p in self.schema.get("properties", [])}

    def prop(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.schema.get("properties", []) if p["name"] == name), None)

    # filters ----------------------------------------------------------------------------------
    def check(self, f: Any) -> None:
        """Refuse a filter on a property without the index it needs (weaviate_rules)."""
        if f.operator in (_OP.OPERATOR_AND, _OP.OPERATOR_OR, _OP.OPERATOR_NOT):
            for g in f.filters:
                self.check(g)
            return
        name = f.target.property if f.HasField("target") else f.on[-1]
        check_filterable(self.prop(name), name)

    def matches(self, obj: Obj, f: Any) -> bool:
        """One object against a filter, on the terms the inverted index would hold: text values
        tokenized as their property says (FIELD trims, WORD splits), filter values too."""
        op = f.operator
        if op == _OP.OPERATOR_AND:
            return all(self.matches(obj, g) for g in f.filters)
        if op == _OP.OPERATOR_OR:
            return any(self.matches(obj, g) for g in f.filters)
        if op == _OP.OPERATOR_NOT:
            return not any(self.matches(obj, g) for g in f.filters)
        name = f.target.property if f.HasField("target") else f.on[-1]
        prop = self.prop(name)
        have = [obj.id] if name == "_id" else terms(prop, obj.props.get(name))
        kind = f.WhichOneof("test_value")
        want = getattr(f, kind) if kind else None
        wants = list(want.values) if kind and kind.endswith("_array") else [want]
        if name != "_id":
            wants = [t for w in wants for t in (terms(prop, w, filter_value=True) or [w])]
        if op == _OP.OPERATOR_EQUAL:  # every term of the value (one for FIELD)
            return all(w in have for w in wants)
        if op == _OP.OPERATOR_NOT_EQUAL:
            return not all(w in have for w in wants)
        if op == _OP.OPERATOR_LIKE:  # adapters/repos/db/inverted/like_regexp.go:41-46
            pattern = re.escape(str(wants[0])).replace(r"\*", ".*").replace(r"\?", ".")
            return any(isinstance(v, str) and re.fullmatch(pattern, v) for v in have)
        if op == _OP.OPERATOR_CONTAINS_ANY:
            return any(w in have for w in wants)
        if op == _OP.OPERATOR_CONTAINS_ALL:
            return all(w in have for w in wants)
        if op in (_OP.OPERATOR_GREATER_THAN, _OP.OPERATOR_GREATER_THAN_EQUAL,
                  _OP.OPERATOR_LESS_THAN, _OP.OPERATOR_LESS_THAN_EQUAL):
            value = obj.props.get(name)
            if value is None:
                return False
            return {_OP.OPERATOR_GREATER_THAN: value > want,
                    _OP.OPERATOR_GREATER_THAN_EQUAL: value >= want,
                    _OP.OPERATOR_LESS_THAN: value < want,
                    _OP.OPERATOR_LESS_THAN_EQUAL: value <= want}[op]
        raise NotImplementedError(f"fake Weaviate: filter operator {op}")

    def select(self, f: Any | None) -> list[Obj]:
        """Matching objects in id order (the order real Weaviate uses for plain fetches)."""
        if f is not None:
            self.check(f)
        objs = sorted(self.objects.values(), key=lambda o: o.id)
        return [o for o in objs if f is None or self.matches(o, f)]

    # ranking ----------------------------------------------------------------------------------
    def near(self, objs: list[Obj], target: str, query: list[float]) -> list[tuple[Obj, float]]:
        """Brute force cosine distance (1 - cosine similarity), nearest first."""
        qn = math.sqrt(sum(x * x for x in query)) or 1.0
        out = []
        for o in objs:
            v = o.vectors.get(target)
            if v is None:
                continue
            vn = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append((o, 1.0 - sum(a * b for a, b in zip(v, query, strict=True)) / (vn * qn)))
        return sorted(out, key=lambda pair: (pair[1], pair[0].id))

    def bm25(self, objs: list[Obj], query: str, props: list[str]) -> list[tuple[Obj, float]]:
        """Okapi BM25 (k1 1.2, b 0.75) over the searchable text properties; idf over all objects;
        query terms as weaviate_rules.bm25_query_terms makes them (stopwords out, repeats boost)."""
        if not props:
            props = [p["name"] for p in self.schema.get("properties", [])
                     if p.get("indexSearchable")]
        for name in props:
            check_searchable(self.prop(name), name)
        query_terms = bm25_query_terms(query)

        def tokens(o: Obj) -> list[str]:
            return [w for p in props for w in word_terms(str(o.props.get(p) or ""))]

        corpus = [tokens(o) for o in self.objects.values()]
        n = len(corpus) or 1
        avg = sum(len(t) for t in corpus) / n or 1.0
        df = Counter(w for t in corpus for w in set(t))
        out = []
        for o in objs:
            toks = tokens(o)
            tf = Counter(toks)
            score = 0.0
            for t in query_terms.keys() & tf.keys():
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += (query_terms[t] * idf * tf[t] * 2.2
                          / (tf[t] + 1.2 * (0.25 + 0.75 * len(toks) / avg)))
            if score > 0:
                out.append((o, score))
        return sorted(out, key=lambda pair: (-pair[1], pair[0].id))


class Store:
    """Collections by name, guarded by one lock (the gRPC server is multi-threaded)."""

    def __init__(self) -> None:
        self.collections: dict[str, Collection] = {}
        self.lock = threading.RLock()

    def get(self, name: str) -> Collection:
        """usecases/schema/class.go:53,65: the first letter is upper-cased, the rest is exact."""
        try:
            return self.collections[class_name(name)]
        except Refused:
            raise KeyError(name) from None

    def create(self, schema: dict[str, Any]) -> Collection:
        col = self.collections[schema["class"]] = Collection(schema)
        return col

    def similar(self, name: str) -> str | None:
        """cluster/schema/manager.go:124,136: a new class may not differ from one only in case."""
        return next((k for k in self.collections if k.lower() == name.lower()), None)
