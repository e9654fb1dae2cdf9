"""Loa's benchmarks: `./loa bench` (or `python -m bench`) runs them and prints their figures."""
