"""The rerank path: planning a search, scoring its hits and rewriting the response."""
