"""Hyperparameter sweeps: Ray Tune + Optuna over the METHODS.md sweep parameters."""
