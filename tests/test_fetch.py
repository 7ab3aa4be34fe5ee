"""The fetch stage's search order: user path, system location, download (from a loopback server here)."""
import functools
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from datagen import make_idx_dataset
from pipeline.data.catalog import DATASETS, DatasetSpec, RemoteFile
from pipeline.data.config import DataConfig
from pipeline.data.errors import DataError
from pipeline.data.fetch import fetch

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def served(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (directory, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def register(name: str, base_url: str, files: dict[str, bytes], wrong_md5: bool = False) -> None:
    remotes = tuple(RemoteFile(n, base_url + n, "0" * 32 if wrong_md5 else hashlib.md5(b).hexdigest())
                    for n, b in files.items())
    DATASETS.register(name)(DatasetSpec(name=name, source="idx", files=remotes,
                                        class_names=tuple(str(i) for i in range(10))))


def test_download_verifies_and_records_origin(tmp_path, served):
    www, url = served
    make_idx_dataset(www, per_class_train=2, per_class_test=1)
    files = {p.name: p.read_bytes() for p in sorted(www.iterdir())}
    register("served-idx", url, files)
    info = fetch(DataConfig(dataset="served-idx"), tmp_path / "raw")
    assert info["origin"] == url.rstrip("/")
    assert {n: (tmp_path / "raw" / n).read_bytes() for n in files} == files
    assert json.loads((tmp_path / "raw" / "source.json").read_text())["files"]["t10k-labels-idx1-ubyte.gz"] \
        == hashlib.sha256(files["t10k-labels-idx1-ubyte.gz"]).hexdigest()


def test_download_with_bad_checksum_writes_nothing(tmp_path, served):
    www, url = served
    make_idx_dataset(www, per_class_train=1, per_class_test=1)
    register("served-bad", url, {p.name: p.read_bytes() for p in www.iterdir()}, wrong_md5=True)
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(DataConfig(dataset="served-bad"), tmp_path / "raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]


def test_offline_without_data_gives_one_clear_message(tmp_path):
    with socket.socket() as sock:  # a loopback port with nothing listening: the download is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    register("unreachable", f"http://127.0.0.1:{port}/", {"train-images-idx3-ubyte.gz": b""})
    with pytest.raises(DataError) as error:
        fetch(DataConfig(dataset="unreachable"), tmp_path / "raw")
    message = str(error.value)
    assert "not found" in message and "download from" in message and "data.path" in message
    assert not (tmp_path / "raw").exists() and not list(tmp_path.iterdir())


def test_download_off_says_so(tmp_path):
    with pytest.raises(DataError, match="data.download: false"):
        fetch(DataConfig(dataset="mnist", download=False), tmp_path / "raw")


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_found_and_verified(tmp_path):
    info = fetch(DataConfig(), tmp_path / "raw")
    assert info["origin"] == str(DEBIAN)
    assert sorted(info["files"]) == sorted(p.name for p in DEBIAN.iterdir())
