"""Find the words the user typed inside an Elasticsearch query DSL body.

Only full-text leaves carry text a user typed: ``match``, ``match_phrase``,
``match_phrase_prefix``, ``match_bool_prefix``, ``multi_match``, ``combined_fields``, and
``query_string`` / ``simple_query_string``, whose Lucene syntax is parsed (luqum) so that
only the free text is kept: field-qualified terms (``itype:BK``, the facet limits Koha
glues into the string), ranges, regular expressions and negated terms are dropped, and
operators, boosts, fuzziness, proximity and wildcard markers are stripped from the words
they decorate.

Compound queries are walked where they score: ``bool.must`` and ``bool.should`` (never
``filter`` or ``must_not``: they constrain the results, they are not what the user typed),
``function_score``, ``script_score``, ``dis_max``, ``boosting.positive``, ``nested``,
``has_child``/``has_parent``. Distinct texts are joined with a space in document order
(the same words in Search UI's four ``multi_match`` variants count once).

A query is type-ahead when every leaf that carries text is prefix-style: the words typed so
far, matched as a prefix (``match_phrase_prefix``, ``match_bool_prefix``, ``prefix``,
``multi_match`` of type ``phrase_prefix`` or ``bool_prefix``, or a leaf on
search-as-you-type subfields only). Search UI's and Searchkit's result searches mix a
``phrase_prefix`` variant with full-word ones: those are not type-ahead.

The function never raises: any shape it does not understand yields no text, which means
"do not rerank" rather than an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from luqum import tree
from luqum.exceptions import ParseError
from luqum.parser import parser as _lucene

_LEAF_KEYS = ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix", "prefix")
_PREFIX_LEAVES = ("match_phrase_prefix", "match_bool_prefix", "prefix")
_PREFIX_TYPES = ("phrase_prefix", "bool_prefix")
#: The subfields a ``search_as_you_type`` field adds: matching them is matching prefixes.
_SAYT_SUFFIXES = ("._2gram", "._3gram", "._index_prefix")
_DIRECT = ("multi_match", "combined_fields")
_LUCENE = ("query_string", "simple_query_string")
_WRAPPERS = ("function_score", "script_score", "nested", "has_child", "has_parent")
_MAX_DEPTH = 64
#: Lucene syntax longer than this is not parsed (a user does not type it).
_MAX_LUCENE_CHARS = 4096
#: Characters that mark, rather than make, a word: wildcards, and the ``simple_query_string``
#: operators that luqum reads as parts of words (``|``, ``&&``, ``||``, ``!``).
_MARKERS = "*?|&!\\"


@dataclass(frozen=True)
class QueryWords:
    """What the user typed, as the query holds it."""

    text: str | None
    #: Every leaf with text is prefix-style: a type-ahead search.
    type_ahead: bool = False


@dataclass
class _Leaves:
    texts: list[str]
    prefix: list[bool]

    def add(self, text: str | None, prefix: bool) -> None:
        if text:
            self.texts.append(text)
            self.prefix.append(prefix)


def read_query(query: Any) -> QueryWords:
    leaves = _Leaves([], [])
    _walk(query, leaves, 0)
    unique = dict.fromkeys(leaves.texts)  # de-duplicated, first occurrence order
    joined = " ".join(unique).strip()
    return QueryWords(joined or None, bool(leaves.prefix) and all(leaves.prefix))


def extract_query_text(query: Any) -> str | None:
    return read_query(query).text


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _sayt_only(fields: Any) -> bool:
    """Whether ``fields`` name only search-as-you-type subfields (boosts allowed)."""
    names = [fields] if isinstance(fields, str) else fields
    if not isinstance(names, list) or not names:
        return False
    return all(isinstance(f, str) and f.split("^")[0].endswith(_SAYT_SUFFIXES) for f in names)


def _leaf(kind: str, body: dict[str, Any], out: _Leaves) -> None:
    for name, field_body in body.items():
        key = "value" if kind == "prefix" else "query"
        value = field_body.get(key) if isinstance(field_body, dict) else field_body
        out.add(_text(value), kind in _PREFIX_LEAVES or _sayt_only(name))


def _walk(node: Any, out: _Leaves, depth: int) -> None:
    if depth > _MAX_DEPTH or not isinstance(node, dict):
        return
    for kind, body in node.items():
        if not isinstance(body, dict):
            continue
        if kind in _LEAF_KEYS:
            _leaf(kind, body, out)
        elif kind in _DIRECT:
            prefix = body.get("type") in _PREFIX_TYPES or _sayt_only(body.get("fields"))
            out.add(_text(body.get("query")), prefix)
        elif kind in _LUCENE:
            text = _text(body.get("query"))
            free = lucene_free_text(text, simple=kind == "simple_query_string") if text else ""
            out.add(free, False)
        elif kind == "bool":
            for clause in ("must", "should"):
                _walk_many(body.get(clause), out, depth)
        elif kind in _WRAPPERS:
            _walk(body.get("query"), out, depth + 1)
        elif kind == "dis_max":
            _walk_many(body.get("queries"), out, depth)
        elif kind == "boosting":
            _walk(body.get("positive"), out, depth + 1)


def _walk_many(value: Any, out: _Leaves, depth: int) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, out, depth + 1)
    else:
        _walk(value, out, depth + 1)


def lucene_free_text(text: str, *, simple: bool = False) -> str:
    """The free text of a Lucene query string: the words and phrases a user typed, without
    field-qualified terms, ranges, negations or syntax. ``simple`` is the
    ``simple_query_string`` dialect (``|`` for OR, ``+`` for AND, ``-`` for NOT)."""
    if len(text) > _MAX_LUCENE_CHARS:
        return ""
    source = text
    if simple:
        # Its operators, spelled the way the Lucene grammar reads them.
        source = source.replace("|", " OR ").replace("+", " AND ")
    try:
        parsed = _lucene.parse(source)
    except (ParseError, RecursionError, ValueError, TypeError, IndexError):
        # ES refuses a query_string it cannot parse, and is lenient with
        # simple_query_string: keep the words between the operator characters.
        return _words_only(text) if simple else ""
    words: list[str] = []
    _free(parsed, words, 0)
    return " ".join(words)


def _clean(word: str) -> str:
    if word.upper() in ("AND", "OR", "NOT"):
        return ""
    unescaped = word.replace("\\", "")
    return unescaped.strip(_MARKERS).replace("*", "").replace("?", "").strip()


def _words_only(text: str) -> str:
    out = []
    for token in text.split():
        if token.startswith("-"):
            continue
        word = _clean(token.strip('+-"()~0123456789'))
        if word:
            out.append(word)
    return " ".join(out)


def _free(node: tree.Item, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, tree.SearchField | tree.Range | tree.From | tree.To | tree.Regex):
        return  # a filter on a field, a range or a pattern: not what the user typed
    if isinstance(node, tree.Prohibit | tree.Not):
        return  # what the user does not want
    if isinstance(node, tree.Phrase):
        phrase = node.value.strip('"').replace('\\"', '"').strip()
        if phrase:
            out.append(phrase)
        return
    if isinstance(node, tree.Word):
        if node.value.startswith("!"):
            return  # ``!term`` is NOT term
        word = _clean(node.value)
        if word:
            out.append(word)
        return
    for child in node.children:
        _free(child, out, depth + 1)
