"""A model in this process: the scorer, its batching worker thread, and the backend
contract the worker runs (``backend``: items in, outputs out; ``passes``: how a batch is cut;
``collate``: items into padded tensors)."""
