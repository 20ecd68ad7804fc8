"""Benchmarks, run from the checkout's top directory: ``python -m bench.NAME --help``.
A package of the checkout (never installed), so the tests and the benchmarks import
each other, and ``lab``, without sys.path edits."""
