"""Scoring backends behind one interface (:class:`sidecar.scoring.base.Scorer`).

Importing this package is cheap: torch and transformers are imported only by the modules
that need them, so ``sidecar.keys`` can name the interface without loading a model stack.
"""
