"""Augmentation: memorisation-driven per-sample RandAugment (memorisation.py)."""
