"""HTTP handlers: parse the request, call the rerank step and the ES client, write the response."""
