"""Benchmarks (scripts: python bench/NAME.py --help); a package so tests and the
benchmarks import each other without sys.path edits."""
