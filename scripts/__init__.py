"""Measurement and analysis scripts on the harness's own library; run them as modules from the
project root, e.g. `python -m scripts.bench_operators --out results/operators-h200`."""
