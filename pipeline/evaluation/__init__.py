"""Evaluation: the trained model over the test shards on Ray workers (worker), predictions and test
metrics written to disk (evaluate)."""
