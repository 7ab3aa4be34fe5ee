"""The fetch stage: find a dataset locally or download it, verify it, and copy it into the workspace.

Search order: the user's `data.path`, then the dataset's known system
locations (Debian's /usr/share/datasets/...), then the canonical URL. The
output directory holds the verified files and `source.json` recording where
they came from; it is written atomically, so a failed fetch writes nothing.
"""
from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from pipeline.data.catalog import DATASETS, DatasetSpec, RemoteFile
from pipeline.data.config import DataConfig
from pipeline.data.errors import DataError
from pipeline.io import atomic_dir, file_digest, write_json

DOWNLOAD_TIMEOUT_S = 60


def _uncompressed_name(name: str) -> str:
    return name[: -len(".gz")] if name.endswith(".gz") else name


def _find_file(candidate: Path, remote: RemoteFile, single: bool) -> Path | None:
    """The file for `remote` inside directory `candidate` (or `candidate` itself if it is that file)."""
    if candidate.is_file():
        return candidate if single or candidate.name == remote.name else None
    for name in (remote.name, _uncompressed_name(remote.name)):
        if (candidate / name).is_file():
            return candidate / name
    return None


def verify_file(path: Path, remote: RemoteFile) -> None:
    """Accept the canonical compressed file (MD5) or any copy with the same decompressed bytes."""
    md5 = file_digest(path, "md5")
    if md5 == remote.md5:
        return
    if remote.content_sha256 is not None:
        opener = gzip.open if path.name.endswith(".gz") else open
        digest = hashlib.sha256()
        try:
            with opener(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot be read ({exc}); the file is truncated or corrupt") from exc
        if digest.hexdigest() == remote.content_sha256:
            return
    raise DataError(
        f"{path}: checksum mismatch (md5 {md5}, expected {remote.md5} for {remote.name}); "
        "the file is truncated, corrupt or a different version. Replace it, or set "
        "data.verify: false to accept a private copy."
    )


def _download(remote: RemoteFile, dest: Path) -> None:
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(remote.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(part, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                           desc=f"download {remote.name}") as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))
    part.rename(dest)


def _locate(spec: DatasetSpec, cfg: DataConfig) -> tuple[dict[str, Path], str] | None:
    """Files of `spec` found locally, with the place they were found, or None."""
    single = len(spec.files) == 1
    if cfg.path is not None:
        user = Path(cfg.path).expanduser()
        if not user.exists():
            raise DataError(f"data.path: {user} does not exist")
        found = {r.name: _find_file(user, r, single) for r in spec.files}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise DataError(f"data.path: {user} lacks {', '.join(missing)} for dataset {spec.name}")
        return found, str(user)
    for system_dir in map(Path, spec.system_dirs):
        found = {r.name: _find_file(system_dir, r, False) for r in spec.files}
        if system_dir.is_dir() and all(found.values()):
            return found, str(system_dir)
    return None


def _not_found_message(spec: DatasetSpec, cfg: DataConfig, download_error: str | None) -> str:
    places = [*spec.system_dirs]
    lines = [f"dataset {spec.name!r} was not found."]
    if places:
        lines.append(f"  looked in: {', '.join(places)}")
    if download_error:
        lines.append(f"  download from {spec.files[0].url} failed: {download_error}")
    elif not cfg.download:
        lines.append("  downloading is off (data.download: false)")
    lines.append("  to fix, one of:")
    if spec.install_hint:
        lines.append(f"    - {spec.install_hint}")
    names = ", ".join(r.name for r in spec.files)
    lines.append(f"    - put {names} in a directory and set data.path to it in params.yaml")
    lines.append("    - run where the internet is reachable (the files are downloaded and checked)")
    return "\n".join(lines)


def _fetch_remote_files(spec: DatasetSpec, cfg: DataConfig, out: Path) -> dict:
    located = _locate(spec, cfg)
    if located is not None:
        found, origin = located
        for remote in spec.files:
            source = found[remote.name]
            if cfg.verify:
                verify_file(source, remote)
            shutil.copyfile(source, out / source.name)
    else:
        if not cfg.download:
            raise DataError(_not_found_message(spec, cfg, None))
        origin = spec.files[0].url.rsplit("/", 1)[0]
        for remote in spec.files:
            try:
                _download(remote, out / remote.name)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise DataError(_not_found_message(spec, cfg, str(exc))) from exc
            verify_file(out / remote.name, remote)
    files = {p.name: file_digest(p) for p in sorted(out.iterdir())}
    return {"dataset": spec.name, "source": spec.source, "origin": origin, "files": files}


def _describe_local_source(spec: DatasetSpec, cfg: DataConfig) -> dict:
    if spec.source == "digits":
        return {"dataset": spec.name, "source": spec.source, "origin": "scikit-learn load_digits"}
    root = Path(cfg.path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data.path: {root} is not a directory")
    info = {"dataset": spec.name, "source": spec.source, "origin": str(root)}
    if cfg.lists:
        lists = {}
        for split, name in sorted(cfg.lists.items()):
            path = (root / name) if not Path(name).is_absolute() else Path(name)
            if not path.is_file():
                raise DataError(f"data.lists.{split}: {path} does not exist")
            lists[split] = str(path)
        info["lists"] = lists
    if cfg.class_names:
        names = Path(cfg.class_names)
        names = names if names.is_absolute() else root / names
        if not names.is_file():
            raise DataError(f"data.class_names: {names} does not exist")
        info["class_names"] = str(names)
    info["content"] = content_digest(info)
    return info


def content_digest(info: dict) -> dict:
    """SHA-256 over what the source will give prepare: class names, then per split each image's
    path, label and bytes in reading order. A file tree outside the workspace is no DVC dependency;
    with this in source.json (fetch always runs) a changed, added or removed image changes
    `data/raw`, and `dvc repro` reruns prepare."""
    from pipeline.data.config import SPLITS
    from pipeline.data.sources import SOURCES

    source = SOURCES.get(info["source"])(info, Path())
    digest = hashlib.sha256("\n".join(source.class_names).encode())
    total = 0
    for split in (s for s in SPLITS if s in source.counts):
        for sample in tqdm(source.read(split), total=source.counts[split], desc=f"fetch: hash {split}",
                           unit="img", mininterval=1.0):
            digest.update(f"\0{split}\0{sample.source}\0{sample.label}\0{len(sample.data)}\0".encode())
            digest.update(sample.data)
            total += 1
    return {"sha256": digest.hexdigest(), "images": total}


def fetch(cfg: DataConfig, out_dir: str | Path) -> dict:
    """Make `out_dir` hold the verified raw dataset and `source.json`; return that record."""
    spec = DATASETS.get(cfg.dataset)
    with atomic_dir(out_dir) as tmp:
        info = _fetch_remote_files(spec, cfg, tmp) if spec.files else _describe_local_source(spec, cfg)
        write_json(tmp / "source.json", info)
    return info
