"""Scoring: everything behind one interface, :class:`sidecar.scoring.base.Scorer`.

* ``base``: the interface (Scorer, ScoreResult, ModelInfo) and the check every answer passes;
* ``detect``, ``bundled``, ``factory``: which backend serves the configured model, and
  building it;
* ``remote``: an HTTP rerank server shared by several sidecars;
* ``local``: a model in this process, behind its batching worker thread;
* ``hf``: the transformers models the local worker runs (Qwen3, cross-encoders,
  bi-encoders).

Importing this package is cheap: torch and transformers are imported only by the modules
that need them, so ``sidecar.keys`` can name the interface without loading a model stack.
"""
