"""The newcomer's recipe: a new attention operator with its preset, a new metric and a new dataset
adapter, each one file that registers itself (see README, "Extending the harness")."""
