"""Evaluation data: a BEIR-layout folder read for judging, and streamed into an index.

Only the judged queries and the qrels are held in memory; ``corpus.jsonl`` is streamed into
Elasticsearch in bulk chunks with a progress bar, so the same command works on a 5k slice and
on a multi-million-passage collection.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers
from tqdm import tqdm

from es_integration.corpus import read_jsonl, read_qrels

#: One shard, so BM25 statistics are collection-wide (several shards each score with their
#: own term statistics, which makes the baseline depend on document routing); no replicas on
#: a development node. ``title`` and ``text`` are analysed with the standard analyzer, as in
#: the reference figures; nothing else is indexed.
EVAL_SETTINGS: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
EVAL_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {"title": {"type": "text"}, "text": {"type": "text"}},
}

_FILES = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")


@dataclass(frozen=True)
class EvalSet:
    path: Path
    #: Judged queries only (id -> text; those with at least one judgment, as in
    #: ``BeirDataset.judged_queries``), in the order of queries.jsonl.
    queries: dict[str, str]
    #: query id -> {doc id: graded relevance}
    qrels: dict[str, dict[str, int]]

    @property
    def name(self) -> str:
        return self.path.name


def check_folder(path: Path) -> None:
    for name in _FILES:
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a BEIR folder: {name} is missing")


def read_eval_set(path: Path, max_queries: int | None = None) -> EvalSet:
    path = Path(path)
    check_folder(path)
    qrels = read_qrels(path / "qrels.tsv")
    queries: dict[str, str] = {}
    for q in read_jsonl(path / "queries.jsonl"):
        qid = str(q["_id"])
        if qrels.get(qid):
            queries[qid] = str(q["text"])
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
    if not queries:
        raise ValueError(f"{path}: no query in queries.jsonl has a judgment in qrels.tsv")
    return EvalSet(path, queries, {qid: qrels[qid] for qid in queries})


def count_documents(path: Path) -> int:
    with (path / "corpus.jsonl").open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _actions(index: str, corpus: Path) -> Iterator[dict[str, Any]]:
    for doc in read_jsonl(corpus):
        yield {
            "_index": index,
            "_id": str(doc["_id"]),
            "_source": {"title": doc.get("title") or "", "text": doc.get("text") or ""},
        }


def index_is_loaded(es: Elasticsearch, index: str, expected: int) -> bool:
    if not es.indices.exists(index=index):
        return False
    es.indices.refresh(index=index)
    return int(es.count(index=index)["count"]) == expected


def load_corpus(
    es: Elasticsearch,
    path: Path,
    index: str,
    *,
    reload: bool = False,
    progress: bool = True,
    chunk_size: int = 500,
) -> tuple[int, bool]:
    """Make ``index`` hold the folder's corpus; returns (documents, whether it was loaded).

    An index that already holds as many documents as the corpus is kept unless ``reload``.
    """
    total = count_documents(path)
    if not reload and index_is_loaded(es, index, total):
        return total, False
    es.options(ignore_status=404).indices.delete(index=index)
    es.indices.create(index=index, settings=EVAL_SETTINGS, mappings=EVAL_MAPPING)
    failed: list[Any] = []
    with tqdm(
        total=total,
        unit="doc",
        desc=f"loading {index}",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    ) as bar:
        for ok, info in helpers.streaming_bulk(
            es,
            _actions(index, path / "corpus.jsonl"),
            chunk_size=chunk_size,
            raise_on_error=False,
            max_retries=2,
        ):
            if not ok:
                failed.append(info)
            bar.update(1)
    if failed:
        raise RuntimeError(f"{len(failed)} documents failed to load into {index}: {failed[:1]}")
    es.indices.refresh(index=index)
    count = int(es.count(index=index)["count"])
    if count != total:
        raise RuntimeError(f"{index} holds {count} documents after loading {total}")
    return total, True
