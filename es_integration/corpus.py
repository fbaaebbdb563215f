"""Corpora: the bundled sample and any BEIR-layout folder, and loading them into an index.

BEIR layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels.tsv`` (``query-id``, ``corpus-id``, ``score``; the header row is
optional). Only queries and judgments are held in memory; the corpus is streamed into the
index in bulk chunks, so a multi-million-passage collection loads like the 5k slice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from itertools import islice
from pathlib import Path
from typing import Any

from es_integration.es_rest import ESRest

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

#: One shard, so BM25 statistics are collection-wide (several shards each score with their
#: own term statistics, which makes a baseline depend on document routing); no replicas on
#: a development node. ``title`` and ``text`` are analysed with the standard analyzer, as in
#: the reference figures; nothing else is indexed.
BEIR_SETTINGS: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
BEIR_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {"title": {"type": "text"}, "text": {"type": "text"}},
}
BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")
CHUNK = 500


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
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: not a JSON object")
            yield record


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


@dataclass(frozen=True)
class BeirDataset:
    path: Path
    #: id -> text, in the order of queries.jsonl.
    queries: dict[str, str]
    #: query id -> {doc id: graded relevance}
    qrels: dict[str, dict[str, int]]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def judged_queries(self) -> dict[str, str]:
        return {qid: text for qid, text in self.queries.items() if self.qrels.get(qid)}

    def documents(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for doc in read_jsonl(self.path / "corpus.jsonl"):
            yield str(doc["_id"]), {"title": doc.get("title") or "", "text": doc.get("text") or ""}

    def count_documents(self) -> int:
        with (self.path / "corpus.jsonl").open("rb") as fh:
            return sum(1 for line in fh if line.strip())


def read_beir(path: Path) -> BeirDataset:
    path = Path(path)
    for name in BEIR_FILES:
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a BEIR folder: {name} is missing")
    queries = {str(q["_id"]): str(q["text"]) for q in read_jsonl(path / "queries.jsonl")}
    return BeirDataset(path, queries, read_qrels(path / "qrels.tsv"))


def _chunks(
    docs: Iterable[tuple[str, dict[str, Any]]], size: int
) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    it = iter(docs)
    while chunk := list(islice(it, size)):
        yield chunk


def index_beir(
    es_url: str,
    dataset: BeirDataset,
    index: str,
    *,
    reload: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, bool]:
    """Make ``index`` hold the folder's corpus; returns (documents, whether it was loaded).

    An index that already holds as many documents as the corpus is kept unless ``reload``.
    ``progress`` is told how many documents each chunk added.
    """
    es = ESRest(es_url, timeout=300)
    total = dataset.count_documents()
    if not reload and es.index_exists(index):
        es.refresh(index)
        if es.count(index) == total:
            return total, False
    es.recreate_index(index, BEIR_MAPPING, BEIR_SETTINGS)
    for chunk in _chunks(dataset.documents(), CHUNK):
        added = es.bulk_index(index, chunk)
        if progress is not None:
            progress(added)
    es.refresh(index)
    count = es.count(index)
    if count != total:
        raise RuntimeError(f"{index} holds {count} documents after loading {total}")
    return total, True


def load_beir(es_url: str, path: Path, index: str) -> BeirDataset:
    """Read a BEIR folder and make ``index`` hold its corpus."""
    dataset = read_beir(path)
    index_beir(es_url, dataset, index)
    return dataset


def load_sample(es_url: str, index: str = SAMPLE_INDEX) -> int:
    """(Re)create ``index`` with the bundled sample corpus; returns the count."""
    es = ESRest(es_url)
    es.recreate_index(index, SAMPLE_MAPPING)
    docs = ((str(d.pop("_id")), d) for d in read_jsonl(sample_corpus_path()))
    loaded = sum(es.bulk_index(index, chunk) for chunk in _chunks(docs, CHUNK))
    es.refresh(index)
    return loaded
