"""Corpora: the bundled sample and any BEIR-layout folder, and loading them into an index.

BEIR layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels.tsv`` (``query-id``, ``corpus-id``, ``score``; the header row is
optional).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers

SAMPLE_INDEX = "sample"

#: The bundled sample corpus: library-catalogue records and help-desk articles, some in
#: Chinese. ``title`` and ``body`` are what the reranker reads.
SAMPLE_MAPPING: dict[str, Any] = {
    "properties": {
        "title": {"type": "text"},
        "body": {"type": "text"},
        "category": {"type": "keyword"},
        "subjects": {"type": "keyword"},
        "author": {"type": "text"},
        "lang": {"type": "keyword"},
        "year": {"type": "integer"},
        "updated": {"type": "date", "format": "yyyy-MM-dd"},
        "popularity": {"type": "integer"},
    }
}

BEIR_MAPPING: dict[str, Any] = {
    "properties": {
        "title": {"type": "text"},
        "text": {"type": "text"},
    }
}


def sample_corpus_path() -> Path:
    return Path(str(files("es_integration").joinpath("data/sample_corpus.jsonl")))


def sample_queries_path() -> Path:
    return Path(str(files("es_integration").joinpath("data/sample_queries.jsonl")))


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON") from exc


@dataclass
class BeirDataset:
    path: Path
    corpus: dict[str, dict[str, Any]] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    #: query id -> {doc id: graded relevance}
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def judged_queries(self) -> dict[str, str]:
        return {qid: text for qid, text in self.queries.items() if self.qrels.get(qid)}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or not line.strip():
                continue
            try:
                score = int(parts[-1])
            except ValueError:
                if lineno == 1:  # the optional header row
                    continue
                raise ValueError(
                    f"{path}:{lineno}: score {parts[-1]!r} is not an integer"
                ) from None
            qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def read_beir(path: Path) -> BeirDataset:
    path = Path(path)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a BEIR folder: {name} is missing")
    ds = BeirDataset(path)
    for doc in read_jsonl(path / "corpus.jsonl"):
        ds.corpus[str(doc["_id"])] = {
            "title": doc.get("title") or "",
            "text": doc.get("text") or "",
        }
    for q in read_jsonl(path / "queries.jsonl"):
        ds.queries[str(q["_id"])] = str(q["text"])
    ds.qrels = read_qrels(path / "qrels.tsv")
    return ds


def _actions(index: str, docs: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for doc_id, source in docs:
        yield {"_index": index, "_id": doc_id, "_source": source}


def load_documents(
    es: Elasticsearch,
    index: str,
    docs: Iterable[tuple[str, dict[str, Any]]],
    mapping: dict[str, Any],
    *,
    recreate: bool = True,
    chunk_size: int = 500,
) -> int:
    """(Re)create ``index`` with ``mapping`` and bulk-load ``docs``; returns the count."""
    if recreate:
        es.options(ignore_status=404).indices.delete(index=index)
    if not es.indices.exists(index=index):
        es.indices.create(index=index, mappings=mapping)
    ok, errors = helpers.bulk(
        es, _actions(index, docs), chunk_size=chunk_size, refresh="true", raise_on_error=False
    )
    if errors:
        raise RuntimeError(f"{len(errors)} documents failed to load into {index}: {errors[:1]}")
    return int(ok)


def load_sample(es: Elasticsearch, index: str = SAMPLE_INDEX) -> int:
    docs = ((str(d.pop("_id")), d) for d in read_jsonl(sample_corpus_path()))
    return load_documents(es, index, docs, SAMPLE_MAPPING)


def load_beir(es: Elasticsearch, path: Path, index: str) -> BeirDataset:
    ds = read_beir(path)
    load_documents(es, index, ds.corpus.items(), BEIR_MAPPING)
    return ds
