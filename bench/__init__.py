"""avggt-bench: the harness that joins datasets, models, attention plans and metrics."""

__version__ = "0.1.0"
