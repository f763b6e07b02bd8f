"""Benchmarks of the media relay against Janus (run with `make bench` or `python -m benchmarks`)."""
