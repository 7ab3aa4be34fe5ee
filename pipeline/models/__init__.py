"""Models: backbones (backbones.py), classifier heads (heads.py), CLIP (clip.py).

Submodules are imported explicitly (``from pipeline.models.backbones import
build_backbone``) so that using a head never pays for importing open_clip.
"""
