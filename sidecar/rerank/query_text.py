"""Find the words the user typed inside an Elasticsearch query DSL body.

Only full-text leaves carry text a user typed: ``match``, ``match_phrase``,
``match_phrase_prefix``, ``match_bool_prefix``, ``multi_match``, ``combined_fields``, and
``query_string`` / ``simple_query_string``, whose Lucene syntax is parsed (luqum) so that
only what the user typed is kept: free words and phrases, and words scoped to a *text*
field (``title:(library card)``, how catalogues' advanced search sends a title search);
terms on other fields (``itype:BK``, ``year:[2000 TO 2010]``, the facet limits Koha glues
into the string: filters), ranges, regular expressions and negated terms are dropped, and
operators, boosts, fuzziness, proximity and wildcard markers are stripped from the words
they decorate. Which fields are text is the caller's ``text_field`` (the index's mapping,
learned in :mod:`sidecar.rerank.windows`, and ``rerank.indices``); without one, every
field-scoped term is a filter.

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

from collections.abc import Callable
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

#: Whether a field name (as a query names it: a path, perhaps a ``*`` pattern) is a text
#: field: words scoped to it are what the user typed.
TextField = Callable[[str], bool]


def _no_text_field(name: str) -> bool:
    del name
    return False


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
    text_field: TextField = _no_text_field

    def add(self, text: str | None, prefix: bool) -> None:
        if text:
            self.texts.append(text)
            self.prefix.append(prefix)


def read_query(query: Any, text_field: TextField = _no_text_field) -> QueryWords:
    leaves = _Leaves([], [], text_field)
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
            simple = kind == "simple_query_string"
            free = lucene_free_text(text, simple=simple, text_field=out.text_field) if text else ""
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


def lucene_free_text(
    text: str, *, simple: bool = False, text_field: TextField = _no_text_field
) -> str:
    """The free text of a Lucene query string: the words and phrases a user typed, and
    those scoped to a field ``text_field`` says is text; without terms on other fields,
    ranges, negations or syntax. ``simple`` is the ``simple_query_string`` dialect (``|``
    for OR, ``+`` for AND, ``-`` for NOT; it has no field syntax)."""
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
    _free(parsed, words, 0, _no_text_field if simple else text_field)
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


def _free(node: tree.Item, out: list[str], depth: int, text_field: TextField) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, tree.SearchField) and text_field(node.name):
        # Words the user typed into a text field's box (advanced search): query text.
        _free(node.expr, out, depth + 1, text_field)
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
        _free(child, out, depth + 1, text_field)


def scoped_fields(query: Any, q: str | None = None) -> list[str]:
    """The field names the ``query_string`` leaves of ``query`` (and the URL's ``q``)
    scope terms to, in order, each once: what must be known to read its text."""
    strings: list[str] = [q] if q else []
    _lucene_strings(query, strings, 0)
    names: list[str] = []
    for text in strings:
        if len(text) > _MAX_LUCENE_CHARS:
            continue
        try:
            parsed = _lucene.parse(text)
        except (ParseError, RecursionError, ValueError, TypeError, IndexError):
            continue
        _field_names(parsed, names, 0)
    return list(dict.fromkeys(names))


def _lucene_strings(node: Any, out: list[str], depth: int) -> None:
    """The ``query_string`` texts of ``node``, where :func:`_walk` reads text."""
    if depth > _MAX_DEPTH or not isinstance(node, dict):
        return
    for kind, body in node.items():
        if not isinstance(body, dict):
            continue
        if kind == "query_string" and isinstance(body.get("query"), str):
            out.append(body["query"])
        elif kind == "bool":
            for clause in ("must", "should"):
                value = body.get(clause)
                for item in value if isinstance(value, list) else [value]:
                    _lucene_strings(item, out, depth + 1)
        elif kind in _WRAPPERS or kind == "boosting":
            _lucene_strings(body.get("positive" if kind == "boosting" else "query"), out, depth + 1)
        elif kind == "dis_max" and isinstance(body.get("queries"), list):
            for item in body["queries"]:
                _lucene_strings(item, out, depth + 1)


def _field_names(node: tree.Item, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, tree.SearchField):
        out.append(node.name)
    for child in node.children:
        _field_names(child, out, depth + 1)
