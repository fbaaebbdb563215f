"""The request shapes of the differential suite: what real clients and frontends send.

Each :class:`Case` is one HTTP request. ``RUN`` in a path or body is replaced by a token
per run (``wrun0`` directly, ``wrun1`` through the sidecar) so that requests that change
state (index a document, delete it) touch documents of their own in each run and leave the
two runs the same state; the comparison maps the tokens back.

Groups (counted in the pytest summary): CRUD and other APIs, search options, paging,
aggregations, highlight, suggest, collapse, knn, runtime fields, URL parameters, formats,
compatibility headers, content types, compression, msearch, the frontends (Koha,
InvenioRDM, Elastic Search UI, Searchkit, ReactiveSearch, Django Haystack, Wagtail);
scroll and point in time are flows (tests/wire/flows.py).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Any

INDEX = "wire"
CRUD = "wire-crud"
RUN = "RUN"
#: The rerank window of the suite's sidecar.
WINDOW = 10
JSON_CT = {"Content-Type": "application/json"}
NDJSON_CT = {"Content-Type": "application/x-ndjson"}
VENDOR = "application/vnd.elasticsearch+json; compatible-with={}"

TOPICS = [
    "password reset",
    "library card",
    "printer queue",
    "wifi access",
    "room booking",
    "harry potter",
]


def corpus_docs() -> list[dict[str, Any]]:
    return [
        {
            "pk": i,
            "title": f"{TOPICS[i % 6]} guide {i}",
            "body": f"How to handle {TOPICS[i % 6]} with {TOPICS[(i + 2) % 6]}, step {i}",
            "category": ["it", "library", "facilities"][i % 3],
            "year": 1990 + i,
            "price": round(4.5 + i * 0.75, 2),
            "tags": [f"t{i % 4}", f"t{i % 7}"],
            "vec": [float(i % 5), float(i % 3), 1.0],
        }
        for i in range(36)
    ]


def mapping(opensearch: bool) -> dict[str, Any]:
    vec: dict[str, Any] = (
        {"type": "knn_vector", "dimension": 3}
        if opensearch
        else {"type": "dense_vector", "dims": 3, "index": True, "similarity": "l2_norm"}
    )
    settings: dict[str, Any] = {"index": {"knn": True}} if opensearch else {}
    return {
        "settings": settings,
        "mappings": {
            "properties": {
                "pk": {"type": "integer", "store": True},
                "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                "body": {"type": "text"},
                "category": {"type": "keyword"},
                "year": {"type": "integer"},
                "price": {"type": "float"},
                "tags": {"type": "keyword"},
                "vec": vec,
            }
        },
    }


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The ``from``/``size`` of the client's page (for the reference answer of a rerank).
    page: tuple[int, int] = (0, 10)

    def rendered(self, token: str) -> Case:
        body = self.body.replace(RUN.encode(), token.encode()) if self.body else self.body
        return Case(
            self.group,
            self.name,
            self.method,
            self.path.replace(RUN, token),
            body,
            self.headers,
            self.page,
        )


def _j(value: Any) -> bytes:
    return json.dumps(value).encode()


def _page(body: Any, params: str = "") -> tuple[int, int]:
    from_ = body.get("from", 0) if isinstance(body, dict) else 0
    size = body.get("size", 10) if isinstance(body, dict) else 10
    for part in params.lstrip("?").split("&"):
        key, _, value = part.partition("=")
        if key == "from" and value.isdigit():
            from_ = int(value)
        if key == "size" and value.isdigit():
            size = int(value)
    return from_, size


def search(
    group: str,
    name: str,
    body: Any,
    *,
    params: str = "",
    headers: dict[str, str] | None = None,
    index: str = INDEX,
    method: str = "POST",
    raw: bytes | None = None,
) -> Case:
    data = raw if raw is not None else (_j(body) if body is not None else None)
    sent = JSON_CT if headers is None and data is not None else headers or {}
    return Case(
        group, name, method, f"/{index}/_search{params}", data, dict(sent), _page(body, params)
    )


def mm(query: str, **extra: Any) -> dict[str, Any]:
    return {"query": {"multi_match": {"query": query, "fields": ["title^2", "body"]}}, **extra}


# ---------------------------------------------------------------------------- search


def _search_bodies() -> list[tuple[str, str, dict[str, Any]]]:
    q = "password reset"
    return [
        ("search-options", "match", {"query": {"match": {"title": q}}}),
        ("search-options", "multi_match", mm(q)),
        (
            "search-options",
            "bool-filter",
            {
                "query": {
                    "bool": {
                        "must": [{"match": {"body": "library card"}}],
                        "filter": [{"term": {"category": "library"}}],
                    }
                }
            },
        ),
        (
            "search-options",
            "bool-should",
            {
                "query": {
                    "bool": {
                        "should": [{"match": {"title": "wifi"}}, {"match": {"body": "printer"}}],
                        "minimum_should_match": 1,
                        "must_not": [{"term": {"category": "it"}}],
                    }
                }
            },
        ),
        (
            "search-options",
            "query_string",
            {"query": {"query_string": {"query": "wifi AND access"}}},
        ),
        (
            # Words scoped to a text field (a catalogue's title box) and a keyword filter.
            "search-options",
            "query_string-scoped",
            {"query": {"query_string": {"query": "title:(library card) AND category:library"}}},
        ),
        (
            "search-options",
            "query_string-filters-only",
            {"query": {"query_string": {"query": "category:library AND year:[1990 TO 2000]"}}},
        ),
        (
            "search-options",
            "simple_query_string",
            {"query": {"simple_query_string": {"query": "printer +queue -room"}}},
        ),
        ("search-options", "match_phrase", {"query": {"match_phrase": {"body": "room booking"}}}),
        (
            "search-options",
            "function_score",
            {
                "query": {
                    "function_score": {
                        "query": {"match": {"title": "library"}},
                        "field_value_factor": {"field": "year", "modifier": "log1p"},
                    }
                }
            },
        ),
        (
            "search-options",
            "dis_max",
            {
                "query": {
                    "dis_max": {
                        "queries": [{"match": {"title": "wifi"}}, {"match": {"body": "wifi"}}]
                    }
                }
            },
        ),
        ("search-options", "source-false", mm(q, _source=False)),
        ("search-options", "source-includes", mm(q, _source=["category", "year"])),
        ("search-options", "source-excludes", mm(q, _source={"excludes": ["body", "vec"]})),
        ("search-options", "source-include-pattern", mm(q, _source={"includes": ["t*"]})),
        ("search-options", "stored-fields", mm(q, stored_fields=["pk"])),
        ("search-options", "docvalue-fields", mm(q, _source=False, docvalue_fields=["year"])),
        ("search-options", "fields", mm(q, fields=["title", "year"], _source=False)),
        (
            "search-options",
            "script-fields",
            mm(
                q,
                _source=False,
                script_fields={"y2": {"script": {"source": "doc['year'].value * 2"}}},
            ),
        ),
        ("search-options", "explain", mm(q, explain=True, size=3)),
        # Type-ahead (issue 22, point 8): passed through, skipped; reason=type_ahead.
        (
            "search-options",
            "type-ahead-bool-prefix",
            {"query": {"match_bool_prefix": {"title": "libr"}}},
        ),
        (
            "search-options",
            "type-ahead-phrase-prefix",
            {"query": {"match_phrase_prefix": {"title": "library ca"}}},
        ),
        ("search-options", "type-ahead-prefix", {"query": {"prefix": {"title": "libr"}}}),
        (
            "search-options",
            "type-ahead-multi-match",
            {
                "query": {
                    "multi_match": {
                        "query": "library ca",
                        "type": "bool_prefix",
                        "fields": ["title", "body"],
                    }
                }
            },
        ),
        # A page across the window's edge with an explanation of every hit (points 1 and 3).
        ("search-options", "explain-across-window", mm("guide", explain=True, size=WINDOW + 5)),
        ("search-options", "version", mm(q, version=True, seq_no_primary_term=True)),
        ("search-options", "track-total-false", mm(q, track_total_hits=False)),
        ("search-options", "track-total-5", mm(q, track_total_hits=5)),
        ("search-options", "min_score", mm(q, min_score=0.01)),
        ("search-options", "timeout", mm(q, timeout="5s")),
        ("search-options", "terminate_after", mm(q, terminate_after=1000)),
        ("search-options", "post_filter", mm(q, post_filter={"term": {"category": "it"}})),
        ("search-options", "indices_boost", mm(q, indices_boost=[{INDEX: 1.5}])),
        ("search-options", "stats", mm(q, stats=["group1"])),
        ("search-options", "sort-score", mm(q, sort=["_score"])),
        ("search-options", "sort-score-desc", mm(q, sort=[{"_score": {"order": "desc"}}])),
        ("search-options", "sort-year", mm(q, sort=[{"year": "desc"}])),
        ("search-options", "sort-score-asc", mm(q, sort=[{"_score": "asc"}])),
        ("search-options", "search_after", mm(q, sort=[{"year": "asc"}], search_after=[1995])),
        (
            "search-options",
            "rescore",
            mm(
                q, rescore={"window_size": 10, "query": {"rescore_query": {"match": {"body": "x"}}}}
            ),
        ),
        ("search-options", "rerank-options", mm(q, rerank={"query": "reset my password"})),
        ("search-options", "rerank-window", mm(q, rerank={"window": 5, "fields": ["title"]})),
        ("search-options", "rerank-disabled", mm(q, rerank={"enabled": False})),
        ("search-options", "match_all", {"query": {"match_all": {}}}),
        ("search-options", "no-query", {}),
        ("search-options", "term-only", {"query": {"term": {"category": "it"}}}),
        ("paging", "size-3", mm(q, size=3)),
        ("paging", "size-25", mm("guide", size=25)),
        ("paging", "from-5-size-5", mm("guide", **{"from": 5, "size": 5})),
        ("paging", "from-8-size-5", mm("guide", **{"from": 8, "size": 5})),
        ("paging", "from-10-size-5", mm("guide", **{"from": 10, "size": 5})),
        ("paging", "from-30", mm("guide", **{"from": 30})),
        ("paging", "size-0", mm(q, size=0)),
        ("paging", "size-string", mm(q, size="5")),
        (
            "aggregations",
            "terms",
            mm(q, aggs={"cats": {"terms": {"field": "category"}}}),
        ),
        (
            "aggregations",
            "nested-aggs",
            mm(
                "guide",
                aggs={
                    "cats": {
                        "terms": {"field": "category"},
                        "aggs": {"avg_price": {"avg": {"field": "price"}}},
                    },
                    "years": {"histogram": {"field": "year", "interval": 10}},
                    "max_year": {"max": {"field": "year"}},
                },
            ),
        ),
        ("aggregations", "size-0-aggs", {"size": 0, "aggs": {"c": {"terms": {"field": "tags"}}}}),
        (
            "aggregations",
            "filter-agg",
            mm(q, aggs={"only_it": {"filter": {"term": {"category": "it"}}}}),
        ),
        ("highlight", "highlight", mm(q, highlight={"fields": {"body": {}, "title": {}}})),
        (
            "highlight",
            "highlight-tags",
            mm(
                q,
                highlight={
                    "pre_tags": ["<b>"],
                    "post_tags": ["</b>"],
                    "fields": {"body": {"number_of_fragments": 1}},
                },
            ),
        ),
        (
            "suggest",
            "term-suggest",
            mm(q, suggest={"s": {"text": "pasword", "term": {"field": "title"}}}),
        ),
        (
            "suggest",
            "suggest-only",
            {"suggest": {"s": {"text": "librery", "term": {"field": "title"}}}},
        ),
        ("collapse", "collapse", mm("guide", collapse={"field": "category"})),
        (
            "collapse",
            "collapse-inner-hits",
            mm(
                "guide",
                collapse={"field": "category", "inner_hits": {"name": "more", "size": 2}},
            ),
        ),
        (
            "knn",
            "knn-only",
            {
                "knn": {
                    "field": "vec",
                    "query_vector": [1.0, 1.0, 1.0],
                    "k": 5,
                    "num_candidates": 10,
                }
            },
        ),
        (
            "knn",
            "knn-hybrid",
            mm(
                q,
                knn={"field": "vec", "query_vector": [1.0, 0.0, 1.0], "k": 5, "num_candidates": 9},
            ),
        ),
        (
            "knn",
            "knn-query",
            {"query": {"knn": {"vec": {"vector": [1.0, 1.0, 1.0], "k": 5}}}},
        ),
        (
            "runtime-fields",
            "runtime-mappings",
            mm(
                q,
                runtime_mappings={
                    "decade": {"type": "long", "script": {"source": "emit(doc['year'].value / 10)"}}
                },
                fields=["decade"],
            ),
        ),
    ]


URL_VARIANTS = [
    ("pretty", "?pretty"),
    ("pretty-true", "?pretty=true"),
    ("human", "?human=true"),
    ("filter-path-ids", "?filter_path=hits.hits._id,hits.total"),
    ("filter-path-source", "?filter_path=hits.hits._source.title"),
    ("filter-path-aggs", "?filter_path=aggregations,took"),
    ("filter-path-exclude", "?filter_path=-hits.hits._source,-_shards"),
    ("filter-path-wildcard", "?filter_path=hits.**._id"),
    ("typed-keys", "?typed_keys=true"),
    ("total-as-int", "?rest_total_hits_as_int=true"),
    ("source-param-false", "?_source=false"),
    ("source-includes-param", "?_source_includes=category,year"),
    ("source-excludes-param", "?_source_excludes=body"),
    ("stored-fields-param", "?stored_fields=pk"),
    ("size-from-params", "?size=3&from=2"),
    ("track-total-param", "?track_total_hits=true"),
    ("request-cache", "?request_cache=false"),
    ("dfs", "?search_type=dfs_query_then_fetch"),
    ("partial", "?allow_partial_search_results=true"),
    ("error-trace", "?error_trace=true"),
    ("sort-param", "?sort=year:desc"),
    ("scroll-param", "?scroll=1m&size=3"),
]

HEADER_VARIANTS: list[tuple[str, str, dict[str, str]]] = [
    ("compatibility", "compat-8", {"Content-Type": VENDOR.format(8), "Accept": VENDOR.format(8)}),
    ("compatibility", "compat-7", {"Content-Type": VENDOR.format(7), "Accept": VENDOR.format(7)}),
    ("compatibility", "compat-9", {"Content-Type": VENDOR.format(9), "Accept": VENDOR.format(9)}),
    (
        "compatibility",
        "compat-mixed",
        {"Content-Type": VENDOR.format(8), "Accept": "application/json"},
    ),
    ("content-type", "charset", {"Content-Type": "application/json; charset=UTF-8"}),
    ("content-type", "text-plain", {"Content-Type": "text/plain"}),
    ("content-type", "form", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("content-type", "none", {}),
    ("compression", "accept-gzip", {"Content-Type": "application/json", "Accept-Encoding": "gzip"}),
    (
        "compression",
        "accept-deflate",
        {"Content-Type": "application/json", "Accept-Encoding": "deflate"},
    ),
    ("formats", "accept-yaml", {"Content-Type": "application/json", "Accept": "application/yaml"}),
    ("formats", "accept-cbor", {"Content-Type": "application/json", "Accept": "application/cbor"}),
    (
        "formats",
        "accept-smile",
        {"Content-Type": "application/json", "Accept": "application/smile"},
    ),
]

FORMAT_PARAMS = [("format-yaml", "?format=yaml"), ("format-json", "?format=json")]


def search_cases() -> list[Case]:
    out = [search(group, name, body) for group, name, body in _search_bodies()]
    bases = [
        ("multi_match", mm("password reset")),
        ("aggs", mm("library card", size=5, aggs={"c": {"terms": {"field": "category"}}})),
        ("source-false", mm("wifi access", _source=False, size=4)),
        ("bool-filter", {"query": {"bool": {"must": {"match": {"title": "room"}}}}, "size": 5}),
    ]
    for base_name, body in bases:
        for name, params in URL_VARIANTS:
            out.append(search("url-params", f"{base_name}+{name}", body, params=params))
        for name, params in FORMAT_PARAMS:
            out.append(search("formats", f"{base_name}+{name}", body, params=params))
        for group, name, headers in HEADER_VARIANTS:
            out.append(search(group, f"{base_name}+{name}", body, headers=headers))
        gz = gzip.compress(_j(body))
        out.append(
            search(
                "compression",
                f"{base_name}+gzip-body",
                body,
                raw=gz,
                headers={**JSON_CT, "Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
            )
        )
    # Body-less searches: the query in the URL (Haystack's and curl's ``?q=``).
    for name, params in [
        ("q", "?q=password"),
        ("q-size", "?q=wifi&size=3"),
        ("q-field", "?q=title:printer"),
        ("q-df", "?q=library&df=body&_source=false"),
        ("q-pretty", "?q=room&pretty"),
        ("q-filter-path", "?q=guide&filter_path=hits.hits._id"),
    ]:
        out.append(search("url-params", f"get+{name}", None, params=params, method="GET"))
    out.append(search("search-options", "all-indices", mm("password reset"), index="wire*"))
    out.append(
        search("search-options", "multi-index", mm("password reset"), index=f"{INDEX},{CRUD}")
    )
    out.append(search("search-options", "missing-index", mm("x"), index="wire-missing"))
    out.append(
        search("search-options", "malformed-query", {"query": {"no_such_query": {}}, "size": 2})
    )
    out.append(search("content-type", "not-json", None, raw=b"{not json"))
    out.append(search("content-type", "duplicate-keys", None, raw=b'{"size": 2, "size": 3}'))
    out.append(
        search(
            "content-type",
            "duplicate-keys-rerank",
            None,
            raw=b'{"query": {"match": {"title": "wifi"}}, "size": 2, "size": 3}',
        )
    )
    return out


# ------------------------------------------------------------------------- frontends


def frontend_bodies() -> list[tuple[str, dict[str, Any]]]:
    """Request bodies shaped exactly like the query builders of real frontends."""
    search_ui_query = "library card"
    fields = ["title^3", "body"]
    search_ui = {
        "query": {
            "bool": {
                "must": [
                    {
                        "bool": {
                            "should": [
                                {
                                    "multi_match": {
                                        "query": search_ui_query,
                                        "fields": fields,
                                        "type": "best_fields",
                                        "operator": "and",
                                    }
                                },
                                {
                                    "multi_match": {
                                        "query": search_ui_query,
                                        "fields": fields,
                                        "type": "cross_fields",
                                    }
                                },
                                {
                                    "multi_match": {
                                        "query": search_ui_query,
                                        "fields": fields,
                                        "type": "phrase",
                                    }
                                },
                                {
                                    "multi_match": {
                                        "query": search_ui_query,
                                        "fields": fields,
                                        "type": "phrase_prefix",
                                    }
                                },
                            ]
                        }
                    }
                ],
                "filter": [{"terms": {"category": ["library", "it"]}}],
            }
        },
        "post_filter": {"bool": {"must": [{"term": {"tags": "t1"}}]}},
        "aggs": {
            "facet_bucket_all": {
                "aggs": {"category": {"terms": {"field": "category", "size": 20}}},
                "filter": {"bool": {"must": [{"term": {"tags": "t1"}}]}},
            }
        },
        "_source": {"includes": ["title", "category", "year"]},
        "highlight": {"fields": {"title": {}}},
        "size": 10,
        "from": 0,
    }
    return [
        (
            "koha",
            {
                "query": {
                    "query_string": {
                        "query": "(harry potter) AND itype:BK",
                        "fuzziness": "0",
                        "default_operator": "AND",
                        "fields": ["title^4", "body^2", "category"],
                        "lenient": True,
                        "analyze_wildcard": True,
                    }
                },
                "aggregations": {
                    "category": {"terms": {"field": "category", "size": 20}},
                    "tags": {"terms": {"field": "tags", "size": 20}},
                },
                "from": 0,
                "size": 20,
            },
        ),
        (
            "koha-limits",
            {
                "query": {
                    "query_string": {
                        "query": "(printer queue) AND (category:it OR category:library)",
                        "fuzziness": "auto",
                        "default_operator": "AND",
                        "fields": ["title^4", "body"],
                        "lenient": True,
                        "analyze_wildcard": True,
                    }
                },
                "from": 0,
                "size": 10,
            },
        ),
        (
            "koha-star",
            {
                "query": {
                    "query_string": {
                        "query": "*",
                        "default_operator": "AND",
                        "fields": ["title"],
                        "lenient": True,
                        "analyze_wildcard": True,
                    }
                },
                "size": 10,
            },
        ),
        (
            "invenio",
            {
                "query": {
                    "bool": {
                        "must": [
                            {
                                "query_string": {
                                    "query": "wifi access",
                                    "fields": ["title^3", "body"],
                                    "default_operator": "AND",
                                }
                            }
                        ],
                        "filter": [{"bool": {"must": [{"range": {"year": {"gte": 1990}}}]}}],
                    }
                },
                "aggs": {"category": {"terms": {"field": "category"}}},
                "post_filter": {"bool": {"must": []}},
                "sort": ["_score"],
                "from": 0,
                "size": 10,
                "track_total_hits": True,
            },
        ),
        (
            "invenio-multi-match-fallback",
            {
                "query": {
                    "bool": {
                        "must": [
                            {
                                "multi_match": {
                                    "query": "room booking (unclosed",
                                    "fields": ["title^3", "body"],
                                }
                            }
                        ]
                    }
                },
                "size": 10,
            },
        ),
        ("search-ui", search_ui),
        (
            "haystack",
            {
                "query": {
                    "bool": {
                        "must": {
                            "query_string": {
                                "default_field": "body",
                                "default_operator": "AND",
                                "query": "(password AND reset)",
                                "analyze_wildcard": True,
                                "auto_generate_synonyms_phrase_query": True,
                                "fuzzy_max_expansions": 50,
                            }
                        },
                        "filter": {"terms": {"category": ["it", "library", "facilities"]}},
                    }
                },
                "from": 0,
                "size": 10,
            },
        ),
        (
            "wagtail",
            {
                "query": {
                    "bool": {
                        "must": {
                            "multi_match": {
                                "query": "printer queue",
                                "fields": ["title^2", "body"],
                            }
                        },
                        "filter": {"match": {"category": "it"}},
                    }
                },
                "_source": False,
                "stored_fields": ["pk"],
                "from": 0,
                "size": 10,
            },
        ),
    ]


def frontend_cases() -> list[Case]:
    out = [search("frontends", name, body) for name, body in frontend_bodies()]
    # Haystack asks for _source in the URL.
    haystack = dict(frontend_bodies())["haystack"]
    out.append(search("frontends", "haystack+source-param", haystack, params="?_source=true"))
    return out


# ---------------------------------------------------------------------------- msearch


def _ndjson(*lines: Any) -> bytes:
    return b"".join(_j(line) + b"\n" for line in lines)


def msearch_cases() -> list[Case]:
    searchkit_header = {"index": INDEX}
    reactive_header = {"preference": "SearchResult"}
    searchkit = {
        "size": 10,
        "query": {
            "bool": {
                "should": [
                    {"multi_match": {"query": "wifi access", "fields": ["title^3", "body"]}},
                    {
                        "multi_match": {
                            "query": "wifi access",
                            "fields": ["title^3", "body"],
                            "type": "phrase_prefix",
                        }
                    },
                ]
            }
        },
        "aggs": {"category": {"terms": {"field": "category"}}},
        "highlight": {"fields": {"title": {}}},
    }
    reactive = {
        "query": {
            "bool": {
                "must": [
                    {
                        "bool": {
                            "should": [
                                {
                                    "multi_match": {
                                        "query": "room booking",
                                        "fields": ["title", "body"],
                                        "type": "cross_fields",
                                        "operator": "and",
                                    }
                                },
                                {
                                    "multi_match": {
                                        "query": "room booking",
                                        "fields": ["title", "body"],
                                        "type": "phrase",
                                        "operator": "and",
                                    }
                                },
                                {
                                    "multi_match": {
                                        "query": "room booking",
                                        "fields": ["title", "body"],
                                        "type": "phrase_prefix",
                                        "operator": "and",
                                    }
                                },
                            ],
                            "minimum_should_match": "1",
                        }
                    }
                ]
            }
        },
        "size": 10,
        "_source": {"includes": ["*"], "excludes": []},
        "from": 0,
    }
    reactive_sqs = {
        "query": {
            "simple_query_string": {
                "query": "printer | queue",
                "fields": ["title", "body"],
                "default_operator": "or",
            }
        },
        "size": 5,
    }
    facet_only = {"size": 0, "aggs": {"category": {"terms": {"field": "category"}}}}
    cases = [
        ("searchkit", JSON_CT, _ndjson(searchkit_header, searchkit, searchkit_header, facet_only)),
        ("reactivesearch", NDJSON_CT, _ndjson(reactive_header, reactive)),
        ("reactivesearch-sqs", NDJSON_CT, _ndjson(reactive_header, reactive_sqs)),
        ("two-searches", NDJSON_CT, _ndjson({}, mm("password reset"), {}, mm("harry potter"))),
        ("no-rerank", NDJSON_CT, _ndjson({}, {"query": {"match_all": {}}}, {}, {"size": 0})),
        ("mixed", NDJSON_CT, _ndjson({}, mm("wifi"), {}, {"query": {"match_all": {}}})),
        ("other-index", NDJSON_CT, _ndjson({"index": CRUD}, mm("guide"), {}, mm("library"))),
        ("missing-index", NDJSON_CT, _ndjson({"index": "wire-missing"}, mm("x"), {}, mm("wifi"))),
        ("rerank-object", NDJSON_CT, _ndjson({}, mm("wifi", rerank={"query": "wireless"}))),
        ("source-false", NDJSON_CT, _ndjson({}, mm("printer", _source=False))),
        ("paging", NDJSON_CT, _ndjson({}, mm("guide", **{"from": 5, "size": 5}))),
        ("crlf", NDJSON_CT, _j({}) + b"\r\n" + _j(mm("room")) + b"\r\n"),
        ("blank-lines", NDJSON_CT, b"\n" + _ndjson({}, mm("room")) + b"\n\n"),
        ("no-trailing-newline", NDJSON_CT, _ndjson({}, mm("room")).rstrip(b"\n")),
        ("odd-lines", NDJSON_CT, _ndjson({}, mm("room"), {})),
        ("not-json", NDJSON_CT, b"{}\n{nope\n"),
        (
            "duplicate-key",
            NDJSON_CT,
            b'{}\n{"size": 2, "size": 3, "query": {"match": {"title": "wifi"}}}\n',
        ),
    ]
    out = [
        Case("msearch", name, "POST", f"/{INDEX}/_msearch", data, dict(h))
        for name, h, data in cases
    ]
    two = _ndjson({}, mm("password reset"), {}, mm("library card", size=3))
    for name, params in [
        ("pretty", "?pretty"),
        ("filter-path", "?filter_path=responses.hits.hits._id"),
        ("filter-path-no-hits", "?filter_path=responses.hits.total"),
        ("typed-keys", "?typed_keys=true"),
        ("total-as-int", "?rest_total_hits_as_int=true"),
        ("max-concurrent", "?max_concurrent_searches=2"),
        ("format-yaml", "?format=yaml"),
    ]:
        out.append(Case("msearch", name, "POST", f"/{INDEX}/_msearch{params}", two, NDJSON_CT))
    out.append(
        Case(
            "msearch",
            "root-path",
            "POST",
            "/_msearch",
            _ndjson({"index": INDEX}, mm("wifi")),
            NDJSON_CT,
        )
    )
    out.append(
        Case(
            "compression",
            "msearch-gzip",
            "POST",
            f"/{INDEX}/_msearch",
            gzip.compress(two),
            {**NDJSON_CT, "Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
        )
    )
    out.append(
        Case(
            "compatibility",
            "msearch-compat-8",
            "POST",
            f"/{INDEX}/_msearch",
            two,
            {
                "Content-Type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
                "Accept": VENDOR.format(8),
            },
        )
    )
    return out


# ------------------------------------------------------------------------ other APIs


def api_cases() -> list[Case]:
    doc = {"title": "crud RUN", "body": "a document written by the RUN run", "year": 2001}
    c = [
        ("GET", "/", None, {}),
        ("HEAD", "/", None, {}),
        ("GET", "/_cluster/health", None, {}),
        ("GET", f"/_cluster/health/{INDEX}?wait_for_status=yellow&timeout=5s", None, {}),
        ("GET", f"/{INDEX}/_mapping", None, {}),
        ("GET", f"/{INDEX}/_settings?filter_path=**.number_of_shards", None, {}),
        ("HEAD", f"/{INDEX}", None, {}),
        ("HEAD", "/wire-missing", None, {}),
        ("GET", "/_cat/indices/wire?format=json&h=index,docs.count&s=index", None, {}),
        ("GET", "/_cat/health?h=status", None, {}),
        ("PUT", f"/{CRUD}/_doc/doc-RUN?refresh=true", _j(doc), JSON_CT),
        ("GET", f"/{CRUD}/_doc/doc-RUN", None, {}),
        ("GET", f"/{CRUD}/_doc/doc-RUN?_source=title", None, {}),
        ("GET", f"/{CRUD}/_source/doc-RUN", None, {}),
        ("HEAD", f"/{CRUD}/_doc/doc-RUN", None, {}),
        ("GET", f"/{CRUD}/_doc/missing-RUN", None, {}),
        ("POST", f"/{CRUD}/_update/doc-RUN?refresh=true", _j({"doc": {"year": 2002}}), JSON_CT),
        ("GET", f"/{CRUD}/_doc/doc-RUN?pretty", None, {}),
        ("POST", f"/{CRUD}/_doc/doc2-RUN?refresh=true", _j(doc), JSON_CT),
        ("PUT", f"/{CRUD}/_create/doc-RUN", _j(doc), JSON_CT),
        (
            "POST",
            "/_mget",
            _j({"docs": [{"_index": CRUD, "_id": "doc-RUN"}, {"_index": CRUD, "_id": "nope"}]}),
            JSON_CT,
        ),
        ("POST", f"/{CRUD}/_mget", _j({"ids": ["doc-RUN", "doc2-RUN"]}), JSON_CT),
        (
            "POST",
            "/_bulk?refresh=true",
            _ndjson(
                {"index": {"_index": CRUD, "_id": "bulk1-RUN"}},
                {"title": "bulk one RUN"},
                {"create": {"_index": CRUD, "_id": "bulk2-RUN"}},
                {"title": "bulk two RUN"},
                {"delete": {"_index": CRUD, "_id": "bulk1-RUN"}},
            ),
            NDJSON_CT,
        ),
        ("POST", f"/{CRUD}/_count", _j({"query": {"match": {"title": "RUN"}}}), JSON_CT),
        ("GET", f"/{INDEX}/_count", None, {}),
        ("GET", f"/{INDEX}/_count?q=category:it", None, {}),
        ("POST", f"/{CRUD}/_refresh", None, {}),
        ("DELETE", f"/{CRUD}/_doc/doc2-RUN?refresh=true", None, {}),
        ("DELETE", f"/{CRUD}/_doc/missing-RUN", None, {}),
        (
            "POST",
            f"/{CRUD}/_delete_by_query?refresh=true",
            _j({"query": {"ids": {"values": ["bulk2-RUN"]}}}),
            JSON_CT,
        ),
        ("POST", f"/{INDEX}/_validate/query", _j({"query": {"match": {"title": "x"}}}), JSON_CT),
        ("POST", f"/{INDEX}/_explain/1", _j({"query": {"match": {"title": "library"}}}), JSON_CT),
        ("GET", f"/{INDEX}/_field_caps?fields=title,year", None, {}),
        (
            "POST",
            f"/{INDEX}/_analyze",
            _j({"text": "Password Reset", "analyzer": "standard"}),
            JSON_CT,
        ),
        ("PUT", "/wire-tmp-RUN", _j({"settings": {"number_of_shards": 1}}), JSON_CT),
        ("GET", "/wire-tmp-RUN/_settings?filter_path=**.number_of_shards", None, {}),
        ("DELETE", "/wire-tmp-RUN", None, {}),
        ("DELETE", "/wire-tmp-RUN", None, {}),
        ("GET", "/_nodes/nope-not-a-node", None, {}),
        ("POST", f"/{CRUD}/_doc?refresh=true", b"not json", JSON_CT),
        (
            "PUT",
            f"/{CRUD}/_doc/gz-RUN?refresh=true",
            gzip.compress(_j(doc)),
            {**JSON_CT, "Content-Encoding": "gzip"},
        ),
        ("GET", f"/{CRUD}/_doc/gz-RUN", None, {"Accept-Encoding": "gzip"}),
        (
            "PUT",
            f"/{CRUD}/_doc/compat-RUN?refresh=true",
            _j(doc),
            {"Content-Type": VENDOR.format(8), "Accept": VENDOR.format(8)},
        ),
        ("GET", f"/{CRUD}/_doc/compat-RUN", None, {"Accept": VENDOR.format(8)}),
    ]
    out = []
    for i, (method, path, body, headers) in enumerate(c):
        name = (
            f"{i:02d}-{method.lower()}-{path.split('?')[0].strip('/').replace('/', '-') or 'root'}"
        )
        out.append(Case("crud-and-apis", name, method, path, body, dict(headers)))
    return out


def all_cases() -> list[Case]:
    return search_cases() + frontend_cases() + msearch_cases() + api_cases()
