"""Query-text extraction and request planning (pure functions), including property tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from sidecar.config import RerankConfig
from sidecar.errors import IllegalArgument
from sidecar.rerank.doc_text import DocTextSpec
from sidecar.rerank.index_config import IndexRules
from sidecar.rerank.plan import plan_search, strip_options
from sidecar.rerank.query_text import extract_query_text

CFG = RerankConfig(window=50)
DOCS = IndexRules(CFG)


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ({"match": {"title": "rare maps"}}, "rare maps"),
        ({"match": {"title": {"query": "rare maps", "operator": "and"}}}, "rare maps"),
        ({"match_phrase": {"body": "printing press"}}, "printing press"),
        ({"multi_match": {"query": "wifi down", "fields": ["a", "b"]}}, "wifi down"),
        ({"query_string": {"query": "title:maps AND year:1900"}}, None),
        ({"query_string": {"query": "old maps AND year:[1800 TO 1900]"}}, "old maps"),
        ({"simple_query_string": {"query": "maps -modern"}}, "maps"),
        (
            {
                "bool": {
                    "must": [{"match": {"title": "maps"}}],
                    "should": {"match": {"body": "antique"}},
                    "filter": [{"term": {"lang": "en"}}],
                    "must_not": [{"match": {"body": "reprint"}}],
                }
            },
            "maps antique",
        ),
        ({"function_score": {"query": {"match": {"t": "maps"}}, "functions": []}}, "maps"),
        ({"dis_max": {"queries": [{"match": {"t": "a"}}, {"match": {"b": "b"}}]}}, "a b"),
        # A filter constrains the results; it is not what the user typed.
        ({"constant_score": {"filter": {"match": {"t": "maps"}}}}, None),
        ({"bool": {"must": [{"match": {"a": "x"}}, {"match": {"b": "x"}}]}}, "x"),
        ({"match_all": {}}, None),
        ({"term": {"id": "x"}}, None),
        ("not a query", None),
        (None, None),
    ],
)
def test_extract_query_text(query: Any, text: str | None) -> None:
    assert extract_query_text(query) == text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "query",
                    "match",
                    "bool",
                    "must",
                    "should",
                    "filter",
                    "multi_match",
                    "size",
                    "from",
                    "sort",
                    "rerank",
                    "_source",
                    "function_score",
                    "dis_max",
                    "queries",
                    "title",
                    "x",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_extractor_never_raises(value: Any) -> None:
    result = extract_query_text(value)
    assert result is None or (isinstance(result, str) and result.strip() == result and result)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), json_values)
def test_forwarded_body_is_original_minus_rerank(body: dict[str, Any], rerank: Any) -> None:
    original = copy.deepcopy(body)
    with_rerank = {**body, "rerank": rerank}
    try:
        plan = plan_search(with_rerank, MultiDict(), CFG, DOCS, "idx", "on")
    except IllegalArgument:
        return  # a malformed rerank object is a clear 400, never an exception escaping
    assert body == original, "planning must not mutate the client's body"
    expected = {k: v for k, v in with_rerank.items() if k != "rerank"}
    if plan.rerank:
        assert plan.body is not None
        # The rerank path only widens paging and _source; everything else is the original.
        widened = {k: v for k, v in plan.body.items() if k not in ("from", "size", "_source")}
        assert widened == {
            k: v for k, v in expected.items() if k not in ("from", "size", "_source")
        }
    else:
        assert plan.body == expected


def test_strip_options_validates_fields() -> None:
    assert strip_options({"q": 1})[1] is None
    body, opts = strip_options(
        {"query": {}, "rerank": {"query": "x", "window": 5, "enabled": True}}
    )
    assert body == {"query": {}}
    assert opts is not None and (opts.query, opts.window) == ("x", 5)
    for bad, msg in [
        ({"window": 0}, "rerank.window"),
        ({"window": "5"}, "rerank.window"),
        ({"fields": [1]}, "rerank.fields"),
        ({"enabled": "no"}, "rerank.enabled"),
        ({"colour": 1}, "unknown field [colour]"),
    ]:
        with pytest.raises(IllegalArgument, match=msg.replace("[", r"\[").replace("]", r"\]")):
            strip_options({"rerank": bad})


@pytest.mark.parametrize(
    ("body", "params", "reason"),
    [
        ({"query": {"match": {"t": "x"}}, "sort": ["_score"]}, {}, None),
        ({"query": {"match": {"t": "x"}}, "sort": [{"_score": "desc"}]}, {}, None),
        ({"query": {"match": {"t": "x"}}, "sort": [{"_score": "asc"}]}, {}, "sort"),
        ({"query": {"match": {"t": "x"}}, "sort": ["year"]}, {}, "sort"),
        ({"query": {"match": {"t": "x"}}}, {"scroll": "1m"}, "scroll"),
        ({"query": {"match": {"t": "x"}}, "size": 0}, {}, "size_zero"),
        ({"query": {"match": {"t": "x"}}}, {"size": "0"}, "size_zero"),
        ({"query": {"match": {"t": "x"}}, "from": 50}, {}, "beyond_window"),
        ({}, {"q": "maps"}, None),
        ({}, {"q": "title:maps"}, "no_query_text"),
        ({"query": {"match": {"t": "x"}}, "pit": {"id": "abc"}}, {}, "pit"),
        ({"query": {"match": {"t": "x"}}, "search_after": [1.0, "a"]}, {}, "search_after"),
        ({"query": {"match": {"t": "x"}}, "rescore": {"query": {}}}, {}, "rescore"),
        ({"query": {"match": {"t": "x"}}, "stored_fields": "_none_"}, {}, "stored_fields_none"),
        ({"query": {"match": {"t": "x"}}}, {"filter_path": "aggregations"}, "filter_path"),
        ({"query": {"match": {"t": "x"}}}, {"filter_path": "-hits.hits"}, "filter_path"),
        ({"query": {"match": {"t": "x"}}}, {"filter_path": "hits.hits._id"}, None),
        ({"query": {"match_all": {}}}, {}, "no_query_text"),
    ],
)
def test_plan_decisions(body: dict[str, Any], params: dict[str, str], reason: str | None) -> None:
    plan = plan_search(body, MultiDict(params), CFG, DOCS, "idx", "on")
    assert plan.skip_reason == reason


def test_plan_widens_paging_to_the_window() -> None:
    plan = plan_search(
        {"query": {"match": {"t": "x"}}, "from": 10, "size": 10}, MultiDict(), CFG, DOCS, "i", "on"
    )
    assert plan.body is not None and (plan.body["from"], plan.body["size"]) == (0, 50)
    straddle = plan_search(
        {"query": {"match": {"t": "x"}}, "from": 45, "size": 10}, MultiDict(), CFG, DOCS, "i", "on"
    )
    assert straddle.body is not None and straddle.body["size"] == 55
    url = plan_search(
        {"query": {"match": {"t": "x"}}},
        MultiDict({"size": "5", "from": "5"}),
        CFG,
        DOCS,
        "i",
        "on",
    )
    assert (url.from_, url.size) == (5, 5)
    assert set(url.drop_params) == {"from", "size"}


def test_doc_text_fields_template_and_caps() -> None:
    spec = DocTextSpec(("title", "meta.subjects", "missing"), None, 12)
    source = {"title": "A very long title indeed", "meta": {"subjects": ["maps", "atlases"]}}
    assert spec.text(source) == "A very long \nmaps\natlases"
    tmpl = DocTextSpec((), "{title} | {meta.subjects}", 100)
    assert tmpl.text(source) == "A very long title indeed | maps\natlases"
    nested = DocTextSpec(("authors.name",), None, 100)
    assert nested.text({"authors": [{"name": "Ada"}, {"name": "Grace"}]}) == "Ada\nGrace"
    assert DocTextSpec(("dotted.key",), None, 100).text({"dotted.key": "v"}) == "v"


def _frontend(name: str) -> dict[str, Any]:
    from tests.wire.cases import frontend_bodies

    return dict(frontend_bodies())[name]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        # Koha: query_string with weighted fields, AND, and the facet limits glued in.
        ("koha", "harry potter"),
        ("koha-limits", "printer queue"),
        ("koha-star", None),
        # InvenioRDM: query_string in bool.must, filters in bool.filter; multi_match fallback.
        ("invenio", "wifi access"),
        ("invenio-multi-match-fallback", "room booking (unclosed"),
        # Elastic Search UI: four multi_match variants of one query, filters elsewhere.
        ("search-ui", "library card"),
        # Django Haystack: query_string with default_field, narrowing in bool.filter.
        ("haystack", "password reset"),
        # Wagtail: multi_match, a match in bool.filter that is not the user's text.
        ("wagtail", "printer queue"),
    ],
)
def test_frontend_query_text(name: str, text: str | None) -> None:
    assert extract_query_text(_frontend(name)["query"]) == text


@pytest.mark.parametrize(
    ("query", "text"),
    [
        # ReactiveSearch's simple_query_string and Searchkit's should of multi_match.
        ({"simple_query_string": {"query": "printer | queue", "fields": ["t"]}}, "printer queue"),
        ({"simple_query_string": {"query": '"wifi access" -guest +campus*'}}, "wifi access campus"),
        ({"query_string": {"query": "title:(harry potter) AND magic~2 wand^3"}}, "magic wand"),
        ({"query_string": {"query": "_exists_:title AND year:>2000 AND spells"}}, "spells"),
        ({"query_string": {"query": '"reset password"~2 OR login'}}, "reset password login"),
        ({"query_string": {"query": "/pass.*/ AND NOT spam AND word"}}, "word"),
        ({"query_string": {"query": "password"}}, "password"),
        ({"query_string": {"query": "a AND (b OR"}}, None),
        (
            {
                "bool": {
                    "must": {"match": {"t": "maps"}},
                    "filter": {"query_string": {"query": "tenant:acme AND maps2"}},
                    "must_not": {"query_string": {"query": "old"}},
                }
            },
            "maps",
        ),
    ],
)
def test_lucene_syntax_keeps_the_free_text(query: dict[str, Any], text: str | None) -> None:
    assert extract_query_text(query) == text


def test_the_language_gate_allows_what_it_cannot_judge() -> None:
    from sidecar.rerank.language import LanguageGate

    gate = LanguageGate(("en",))
    gate.load()
    # A helpdesk's most common queries: one word that lingua guesses at.
    for query in ("password", "pizza", "helpdesk", "kindergarten", "printer not working"):
        assert gate.allows(query), query
    for query in ("如何续借图书馆的书", "Passwort zurücksetzen", "wachtwoord vergeten"):
        assert not gate.allows(query), query
    assert not LanguageGate(()).active, "[] is every language: no gate at all"


#: Short questions (1-4 words) in scripts no language of an English model is written in. The
#: detector alone let some through (``من كتب هاملت`` "who wrote Hamlet", Greek, Hebrew and
#: Thai are not confidently detected), and the English model ranked them worse than ES.
OTHER_SCRIPTS = (
    "كلمة المرور",
    "من كتب هاملت",
    "كيف أجدد بطاقتي",
    "ما هي عاصمة فرنسا",
    "сброс пароля",
    "密码",
    "图书馆开放时间",
    "パスワード",
    "비밀번호 재설정",
    "पासवर्ड",
    "κωδικός πρόσβασης",
    "סיסמה",
    "รหัสผ่าน",
)


def test_a_query_in_a_script_the_model_does_not_read_is_skipped_at_any_length() -> None:
    from sidecar.rerank.language import LanguageGate, could_be

    gate = LanguageGate(("en",))
    for query in OTHER_SCRIPTS:
        assert not could_be(query, gate.languages), query
        assert not gate.allows(query), query
    # Letters in a script the model reads go on to detection; digits and signs are no script.
    for query in ("password", "café crème", "ｐａｓｓ", "2024 ??", "Python برمجة"):
        assert could_be(query, gate.languages), query
    assert could_be("сброс пароля", frozenset({"en", "ru"}))
    assert could_be("パスワード", frozenset({"ja"})) and could_be("密码", frozenset({"ja"}))
    assert could_be("비밀번호", frozenset({"ko"})) and not could_be("비밀번호", frozenset({"zh"}))
    # A language whose scripts the gate does not know: it cannot say, so it does not block.
    assert could_be("сброс пароля", frozenset({"en", "xx"}))


def test_model_languages_null_is_the_model_own_and_empty_is_every_language() -> None:
    from sidecar.config import build_config

    assert build_config({}).model.languages is None
    assert build_config({"model": {"languages": []}}).model.languages == ()
    assert build_config({"model": {"languages": ["en", "de"]}}).model.languages == ("en", "de")


# Type-ahead ------------------------------------------------------------------------------

SEARCH_UI_RESULTS = {
    "bool": {
        "must": [
            {
                "bool": {
                    "should": [
                        {"multi_match": {"query": "libr", "fields": ["t"], "type": t}}
                        for t in ("best_fields", "cross_fields", "phrase", "phrase_prefix")
                    ]
                }
            }
        ]
    }
}


@pytest.mark.parametrize(
    ("body", "type_ahead"),
    [
        ({"query": {"match_bool_prefix": {"title": "libr"}}}, True),
        ({"query": {"match_phrase_prefix": {"title": {"query": "library c"}}}}, True),
        ({"query": {"prefix": {"title": {"value": "libr"}}}}, True),
        ({"query": {"prefix": {"title": "libr"}}}, True),
        (
            # Search UI's autocomplete results, on a search-as-you-type field.
            {
                "query": {
                    "bool": {
                        "must": [
                            {
                                "multi_match": {
                                    "query": "libr",
                                    "type": "bool_prefix",
                                    "fields": ["t^1", "t._2gram^1", "t._3gram^1"],
                                }
                            }
                        ]
                    }
                }
            },
            True,
        ),
        ({"query": {"match": {"title._index_prefix": "libr"}}}, True),
        (
            {
                "query": {"match": {"title": "libr"}},
                "suggest": {"s": {"prefix": "l", "completion": {"field": "s"}}},
            },
            True,
        ),
        # Search UI's and Searchkit's result searches mix a prefix variant with full words.
        ({"query": SEARCH_UI_RESULTS}, False),
        ({"query": {"match": {"title": "library card"}}}, False),
        (
            {
                "query": {"match": {"title": "library"}},
                "suggest": {"s": {"text": "l", "term": {"field": "t"}}},
            },
            False,
        ),
    ],
)
def test_type_ahead_is_not_reranked_by_default(body: dict[str, Any], type_ahead: bool) -> None:
    plan = plan_search(body, MultiDict(), CFG, DOCS, "idx", "on")
    assert (plan.skip_reason == "type_ahead") is type_ahead, plan.skip_reason
    if not type_ahead:
        assert plan.rerank
    # Per index, or per request, type-ahead may be reranked.
    cfg = RerankConfig(indices=[{"pattern": "ta-*", "type_ahead": "rerank"}])  # type: ignore[list-item]
    assert plan_search(body, MultiDict(), cfg, IndexRules(cfg), "ta-1", "on").rerank
    asked = {**body, "rerank": {"enabled": True}}
    assert plan_search(asked, MultiDict(), CFG, DOCS, "idx", "on").rerank


# What ES leaves out of the hits, and the text the model reads -----------------------------

SCRIPT = {"y": {"script": {"source": "doc['year'].value * 2"}}}


@pytest.mark.parametrize(
    ("extra", "widened"),
    [
        # ES leaves _source out when script_fields or stored_fields are asked for and _source
        # is not (FetchContext.buildFetchSourceContext): the text fields are asked for, and
        # taken out again.
        ({"script_fields": SCRIPT}, True),
        ({"stored_fields": ["pk"]}, True),
        ({"docvalue_fields": ["year"], "_source": False}, True),
        ({"fields": ["year"], "_source": False}, True),
        ({"script_fields": SCRIPT, "_source": False}, True),
        # ... and keeps it for these: nothing to widen.
        ({"docvalue_fields": ["year"]}, False),
        ({"fields": ["title"]}, False),
        ({"script_fields": SCRIPT, "_source": True}, False),
        ({"stored_fields": ["_source", "pk"]}, False),
    ],
)
def test_fields_only_searches_get_the_text_fields(extra: dict[str, Any], widened: bool) -> None:
    body = {"query": {"match": {"title": "maps"}}, **extra}
    plan = plan_search(body, MultiDict(), CFG, DOCS, "idx", "on")
    assert plan.rerank
    assert plan.body is not None
    if widened:
        assert plan.body["_source"] == {"includes": list(CFG.default_fields)}
        assert not plan.source_filter.is_identity, "the client's view is restored"
    else:
        assert plan.body.get("_source") == body.get("_source")
        assert plan.source_filter.is_identity


# Words scoped to a text field are query text; terms on other fields are filters ----------

TEXT = {"title", "meta.note", "subjects"}


@pytest.mark.parametrize(
    ("query", "text"),
    [
        # Koha's and other catalogues' advanced search: the title box.
        ("title:(library card)", "library card"),
        ('title:"library card" AND itype:BK', "library card"),
        ("title:(library card) AND year:[2000 TO 2010]", "library card"),
        ("meta.note:rare AND maps", "rare maps"),
        ("sub*:atlas", "atlas"),  # a pattern naming a text field
        ("itype:BK AND year:[2000 TO 2010]", None),
        ("title:/ma.s/ AND -title:modern AND title:old", "old"),
        ("_exists_:title", None),
    ],
)
def test_words_scoped_to_a_text_field_are_query_text(query: str, text: str | None) -> None:
    from fnmatch import fnmatchcase

    from sidecar.rerank.query_text import read_query, scoped_fields

    def is_text(name: str) -> bool:
        return any(fnmatchcase(f, name) for f in TEXT)

    body = {"query_string": {"query": query}}
    assert read_query(body, is_text).text == text
    assert read_query({"bool": {"filter": body}}, is_text).text is None, "a filter clause"
    assert set(scoped_fields(body)) <= {"title", "meta.note", "sub*", "itype", "year", "_exists_"}
    # Without knowing which fields are text, every scoped term stays a filter.
    assert read_query(body).text == read_query(body, lambda _: False).text


def test_plan_reads_scoped_words_by_the_text_fields_it_is_given() -> None:
    body = {"query": {"query_string": {"query": "title:(library card) AND itype:BK"}}}
    assert plan_search(body, MultiDict(), CFG, DOCS, "idx", "on").skip_reason == "no_query_text"
    plan = plan_search(body, MultiDict(), CFG, DOCS, "idx", "on", text_field=TEXT.__contains__)
    assert plan.rerank and plan.query_text == "library card"
    url = MultiDict({"q": "title:(library card) AND itype:BK"})
    plan = plan_search(None, url, CFG, DOCS, "idx", "on", text_field=TEXT.__contains__)
    assert plan.rerank and plan.query_text == "library card"


def test_text_fields_are_learned_from_the_mapping_bounded_and_forgotten() -> None:
    from sidecar.rerank.windows import IndexFacts, mapped_text

    answer = {
        "a": {
            "mappings": {
                "title": {"full_name": "title", "mapping": {"title": {"type": "text"}}},
                "title.raw": {"full_name": "title.raw", "mapping": {"raw": {"type": "keyword"}}},
                "year": {"full_name": "year", "mapping": {"year": {"type": "integer"}}},
            }
        },
        "b": {"mappings": {"note": {"full_name": "note", "mapping": {"note": {"type": "text"}}}}},
    }
    names = ["title", "title.raw", "year", "note", "t*", "nope"]
    assert mapped_text(answer, names) == {
        "title": True,
        "title.raw": False,
        "year": False,
        "note": True,  # text in one of the indices the search covers
        "t*": True,
        "nope": False,  # not mapped: ES matches nothing there
    }
    assert mapped_text({"error": "forbidden"}, ["title"]) == {"title": False}
    now = [0.0]
    facts = IndexFacts(max_entries=2, ttl_s=10, timer=lambda: now[0])
    facts.learn_fields("a", {"title": True})
    assert facts.is_text("a", "title") is True and facts.is_text("b", "title") is None
    facts.learn_fields("a", {"x": False, "y": False})
    assert facts.is_text("a", "title") is None, "bounded"
    now[0] = 11.0
    assert facts.is_text("a", "y") is None, "forgotten: a changed mapping is seen again"
