"""rerank-sidecar: a drop-in Elasticsearch proxy that reranks search hits."""

__version__ = "0.1.0"
