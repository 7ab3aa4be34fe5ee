"""Two-stage training: methods (model + loss), augmentation presets, the job, the per-worker loop (plain
PyTorch), and the Ray launcher and worker entry point that run it."""
