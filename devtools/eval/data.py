"""Evaluation data: the judged queries of a BEIR-layout folder, and its corpus in an index.

Reading and loading are ``es_integration.corpus``'s (the demo loads the same folders); this
adds the selection the harness evaluates and a progress bar while the corpus streams in.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from es_integration.corpus import BeirDataset, index_beir, read_beir


@dataclass(frozen=True)
class EvalSet:
    dataset: BeirDataset
    #: Judged queries only (id -> text; those with at least one judgment), in the order of
    #: queries.jsonl, cut to ``max_queries``.
    queries: dict[str, str]
    #: query id -> {doc id: graded relevance}, for those queries.
    qrels: dict[str, dict[str, int]]

    @property
    def path(self) -> Path:
        return self.dataset.path

    @property
    def name(self) -> str:
        return self.dataset.name


def read_eval_set(path: Path, max_queries: int | None = None) -> EvalSet:
    dataset = read_beir(path)
    queries = dataset.judged_queries
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
    if not queries:
        raise ValueError(f"{path}: no query in queries.jsonl has a judgment in qrels.tsv")
    return EvalSet(dataset, queries, {qid: dataset.qrels[qid] for qid in queries})


def load_corpus(
    es_url: str, data: EvalSet, index: str, *, reload: bool = False, progress: bool = True
) -> tuple[int, bool]:
    """Make ``index`` hold the corpus; returns (documents, whether it was loaded)."""
    with tqdm(
        total=data.dataset.count_documents(),
        unit="doc",
        desc=f"loading {index}",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    ) as bar:
        return index_beir(es_url, data.dataset, index, reload=reload, progress=bar.update)
