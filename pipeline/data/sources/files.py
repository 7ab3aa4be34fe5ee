"""File-based sources that keep each image's original encoded bytes.

- imagefolder: ``root/{train,val,test}/<class>/<image>`` (or ``root/<class>/<image>``
  for a train-only tree); classes are the sorted folder names of train, or the
  `data.class_names` file.
- splitlist: the ImageNet-LT / Places-LT / iNaturalist format, one
  ``relative/path integer_label`` per line, paths relative to the data root.

Memory: imagefolder lists one class folder at a time; splitlist holds its lists'
paths (about 100 bytes per image), never image bytes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from pipeline.data.config import SPLITS
from pipeline.data.errors import DataError
from pipeline.data.sources import SOURCES, RawSample, Source

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def read_class_names(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: duplicate class names")
    return names


def _file_reader(root: Path, entries: Callable[[str], Iterable[tuple[str, int]]]):
    def read(split: str):
        for rel, label in entries(split):
            path = root / rel
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DataError(f"{path}: cannot be read ({exc})") from exc
            yield RawSample(label, data, path.suffix.lower().lstrip("."), rel)

    return read


def _class_images(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def open_imagefolder(info: dict, raw_dir: Path) -> Source:
    root = Path(info["origin"])
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if not split_dirs:
        split_dirs = {"train": root}
    if "train" not in split_dirs:
        raise DataError(f"{root}: has {', '.join(split_dirs)} but no train/ folder")
    if "class_names" in info:
        names = read_class_names(Path(info["class_names"]))
    else:
        names = sorted(p.name for p in split_dirs["train"].iterdir() if p.is_dir())
    index = {name: i for i, name in enumerate(names)}
    class_dirs: dict[str, list[Path]] = {}
    for split, directory in split_dirs.items():
        class_dirs[split] = sorted(p for p in directory.iterdir() if p.is_dir())
        for class_dir in class_dirs[split]:
            if class_dir.name not in index:
                raise DataError(f"{class_dir}: class folder not among the {len(names)} training classes")
    # A counting walk first (for progress), then one class folder listed at a time while reading.
    counts = {split: sum(len(_class_images(d)) for d in dirs) for split, dirs in class_dirs.items()}

    def entries(split: str):
        for class_dir in class_dirs[split]:
            for path in _class_images(class_dir):
                yield str(path.relative_to(root)), index[class_dir.name]

    return Source(names, counts, _file_reader(root, entries))


def is_confined(rel: str) -> bool:
    """Whether relative path `rel` stays under its root (judged from the text: symlinks inside the
    root may point elsewhere, as datasets on shared storage often do)."""
    normal = os.path.normpath(rel)
    return not os.path.isabs(rel) and normal != ".." and not normal.startswith(".." + os.sep)


def read_split_list(path: Path) -> list[tuple[str, int]]:
    """Parse 'relative/path label' lines; duplicates and malformed lines raise DataError."""
    items: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{number}: expected 'relative/path integer_label', got {line!r}")
        rel, label = parts[0].strip(), int(parts[1])
        if not is_confined(rel):
            raise DataError(f"{path}:{number}: path {rel!r} leads outside the data root; list paths are "
                            "relative to it (data.path) and may not climb out with '..'")
        if rel in seen:
            raise DataError(f"{path}:{number}: duplicate path {rel!r} (first on line {seen[rel]})")
        seen[rel] = number
        items.append((rel, label))
    if not items:
        raise DataError(f"{path}: the list is empty")
    return items


def open_splitlist(info: dict, raw_dir: Path) -> Source:
    root = Path(info["origin"])
    entries = {split: read_split_list(Path(path)) for split, path in info["lists"].items()}
    if "class_names" in info:
        names = read_class_names(Path(info["class_names"]))
    else:
        top = max(label for items in entries.values() for _, label in items)
        names = [f"class_{c}" for c in range(top + 1)]
    for split, items in entries.items():
        missing = [rel for rel, _ in items if not (root / rel).is_file()]
        if missing:
            raise DataError(f"{info['lists'][split]}: {len(missing)} listed file(s) missing under "
                            f"{root}, e.g. {missing[0]}")
    return Source(names, {s: len(v) for s, v in entries.items()}, _file_reader(root, entries.__getitem__))


SOURCES.register("imagefolder")(open_imagefolder)
SOURCES.register("splitlist")(open_splitlist)
