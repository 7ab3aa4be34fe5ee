"""Two-stage training: methods (model + loss), augmentation presets, the Ray Train loop and its launch."""
