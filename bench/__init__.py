"""Benchmarks of Profile Audit, each a module run as ``python -m bench.<name>``
(bench/README.md); ``python -m bench.run`` runs them all."""
