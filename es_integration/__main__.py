"""``python -m es_integration``: local ES, corpus loading and the offline demo.

python -m es_integration demo [--dataset DIR] [--port 9280] [--users 60]
python -m es_integration es [--port 9200] [--data-dir .local-es]
python -m es_integration load --es-url URL [--dataset DIR] [--index NAME]

The evaluation harness, the benchmark suite and the soak are dev tools, not shipped:
``python -m devtools.eval``, ``python -m devtools.bench``, ``python -m devtools.soak``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from es_integration import evidence
from es_integration.corpus import (
    SAMPLE_INDEX,
    index_beir,
    load_sample,
    read_beir,
    sample_queries_path,
)
from es_integration.local_es import LocalES, free_port
from es_integration.sidecar_proc import SidecarProcess
from sidecar.ubi.present import table

DEMO_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _load(es_url: str, dataset: Path | None, index: str | None) -> tuple[str, int, str]:
    """Load the sample corpus or a BEIR folder; returns (index, count, an example query)."""
    if dataset is None:
        name = index or SAMPLE_INDEX
        count = load_sample(es_url, name)
        example = "my library card stopped working at the self-checkout machine"
        qpath = sample_queries_path()
        if qpath.is_file():
            for line in qpath.read_text(encoding="utf-8").splitlines():
                if line.strip() and json.loads(line).get("note") == "demo":
                    example = json.loads(line)["query"]
                    break
        return name, count, example
    name = index or dataset.name.replace(".", "-").lower()
    ds = read_beir(dataset)
    count, _ = index_beir(es_url, ds, name)
    example = next(iter(ds.judged_queries.values()), "example query")
    return name, count, example


def _port(wanted: int) -> int:
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", wanted))
        return wanted
    except OSError:
        return free_port()


def _evidence(args: argparse.Namespace, sidecar: str, es_url: str, index: str, token: str) -> None:
    """Simulated users in three cohorts, then the report (:mod:`es_integration.evidence`)."""
    if args.users <= 0:
        return
    if args.dataset is None:
        lines = sample_queries_path().read_text(encoding="utf-8").splitlines()
        queries = evidence.judged_queries(lines)
    else:
        ds = read_beir(args.dataset)
        queries = [
            evidence.Judged(text, frozenset(d for d, g in ds.qrels[qid].items() if g > 0))
            for qid, text in ds.judged_queries.items()
        ]
    cohorts = ", ".join(f"{cidr} {mode}" for mode, cidr, _ in evidence.COHORTS)
    print()
    print(f"simulated users: {args.users} searches in each cohort ({cohorts}),")
    print("clicking by a cascade model on the judged sample queries ...")
    # This run's searches only: the data directory may hold an earlier run's log.
    since = datetime.now(UTC).isoformat(timespec="milliseconds")
    tallies = asyncio.run(evidence.simulate(sidecar, index, queries, args.users))
    for mode, tally in tallies.items():
        errors = f", {tally.errors} errors" if tally.errors else ""
        print(f"  {mode:<10} {tally.searches} searches, {tally.clicks} clicks{errors}")
    indices = ("ubi_queries", "ubi_events")
    figures = asyncio.run(evidence.report(sidecar, es_url, token, indices, since))
    print()
    print("the UBI report (GET /_sidecar/ubi/report, or: rerank-sidecar report --config FILE):")
    print(table(figures))


def cmd_demo(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    print(f"starting the local ES-compatible server (noida-db, data in {data_dir}) ...")
    with LocalES.start(port=_port(args.es_port), data_dir=data_dir) as es:
        index, count, example = _load(es.url, args.dataset, args.index)
        print(f"loaded {count} documents into index '{index}' at {es.url}")
        print(f"starting the sidecar with the bundled model {args.model} ...")
        log_path = data_dir / "sidecar.log"
        token = secrets.token_urlsafe(16)
        with SidecarProcess.start(
            es.url,
            port=_port(args.port),
            model=args.model,
            log_path=log_path,
            config=evidence.demo_config(token),
            config_file=args.config,
            wait_ready=True,
            timeout=300,
        ) as sc:
            _evidence(args, sc.url, es.url, index, token)
            query = {
                "query": {
                    "multi_match": {
                        "query": example,
                        "fields": ["title^2", "body", "subjects", "text"],
                    }
                },
                "size": 5,
                "_source": ["title"],
            }
            body = json.dumps(query, ensure_ascii=False)
            print()
            print(f"sidecar ready at {sc.url}  (Elasticsearch at {es.url}, sidecar log {log_path})")
            print("try it (the X-Rerank header says what happened):")
            ct = "-H 'Content-Type: application/json'"
            print(f"  curl -si {sc.url}/{index}/_search {ct} -d {shlex.quote(body)}")
            print("compare with plain BM25:")
            print(f"  curl -s {es.url}/{index}/_search {ct} -d {shlex.quote(body)}")
            print(f"the debug UI, with the report under Evidence: {sc.url}/_sidecar/ui")
            print(f"  (admin token for this run: {token})")
            print("press Ctrl-C to stop")
            if args.exit_after_ready:
                return 0
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                while not stop.wait(1.0):
                    if sc.proc.poll() is not None:
                        print(f"the sidecar exited ({sc.proc.returncode}); see {log_path}")
                        return 1
            except KeyboardInterrupt:
                pass
            print("stopping ...")
    return 0


def cmd_es(args: argparse.Namespace) -> int:
    # Block the signals first: sigwait only receives signals that are blocked, otherwise
    # SIGTERM kills this process before the server child is stopped.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with LocalES.start(port=args.port, data_dir=Path(args.data_dir).resolve()) as es:
        print(f"ES-compatible server at {es.url} (Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    index, count, _ = _load(args.es_url, args.dataset, args.index)
    print(f"loaded {count} documents into '{index}'")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m es_integration")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="local ES + sample corpus + sidecar, offline")
    demo.add_argument("--dataset", type=Path, help="a BEIR-layout folder instead of the sample")
    demo.add_argument("--index", help="index name (default: sample, or the folder name)")
    demo.add_argument("--port", type=int, default=9280, help="sidecar port (default 9280)")
    demo.add_argument("--es-port", type=int, default=9200, help="local ES port (default 9200)")
    demo.add_argument("--data-dir", default=".local-es", help="local ES data directory")
    demo.add_argument("--model", default=DEMO_MODEL)
    demo.add_argument("--config", type=Path, help="sidecar config file")
    demo.add_argument(
        "--users",
        type=int,
        default=60,
        help="simulated searches per cohort before the report (0: none; default 60)",
    )
    demo.add_argument("--exit-after-ready", action="store_true", help=argparse.SUPPRESS)
    es = sub.add_parser("es", help="run the local ES-compatible server in the foreground")
    es.add_argument("--port", type=int, default=9200)
    es.add_argument("--data-dir", default=".local-es")
    load = sub.add_parser("load", help="load the sample corpus or a BEIR folder")
    load.add_argument("--es-url", default=os.environ.get("ES_URL", "http://localhost:9200"))
    load.add_argument("--dataset", type=Path)
    load.add_argument("--index")
    args = parser.parse_args(argv)
    handlers = {"demo": cmd_demo, "es": cmd_es, "load": cmd_load}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
