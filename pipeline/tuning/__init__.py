"""Hyperparameter sweeps: Ray Tune + Optuna over the sweep parameters of docs/methods.md."""
