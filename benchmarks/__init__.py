"""Benchmarks of the delivery path; run with `make bench`."""
