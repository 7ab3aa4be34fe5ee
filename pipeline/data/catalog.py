"""Known datasets: where they live, where to download them, and how to verify them.

Checksums are facts of the published files: `md5` is the canonical compressed
file's MD5 (what torchvision and the dataset authors publish); `content_sha256`
is the SHA-256 of the decompressed bytes, which also accepts re-packed copies
such as Debian's dataset-fashion-mnist (same IDX bytes, different gzip).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.registry import Registry


@dataclass(frozen=True)
class RemoteFile:
    name: str
    url: str
    md5: str
    content_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str  # the prepare-stage reader: idx, cifar, digits
    files: tuple[RemoteFile, ...] = ()
    system_dirs: tuple[str, ...] = ()
    install_hint: str = ""
    class_names: tuple[str, ...] = field(default=())


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _add(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name)(spec)


_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_add(DatasetSpec(
    name="fashion-mnist",
    source="idx",
    files=(
        RemoteFile("train-images-idx3-ubyte.gz", _FMNIST + "train-images-idx3-ubyte.gz",
                   "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                   "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        RemoteFile("train-labels-idx1-ubyte.gz", _FMNIST + "train-labels-idx1-ubyte.gz",
                   "25c81989df183df01b3e8a0aad5dffbe",
                   "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        RemoteFile("t10k-images-idx3-ubyte.gz", _FMNIST + "t10k-images-idx3-ubyte.gz",
                   "bef4ecab320f06d8554ea6380940ec79",
                   "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", _FMNIST + "t10k-labels-idx1-ubyte.gz",
                   "bb300cfdad3c16e7a12a480ee83cd310",
                   "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    install_hint="as root: apt-get install dataset-fashion-mnist (Debian/Ubuntu)",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
))

_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_add(DatasetSpec(
    name="mnist",
    source="idx",
    files=(
        RemoteFile("train-images-idx3-ubyte.gz", _MNIST + "train-images-idx3-ubyte.gz",
                   "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        RemoteFile("train-labels-idx1-ubyte.gz", _MNIST + "train-labels-idx1-ubyte.gz",
                   "d53e105ee54ea40749a09fcbcd1e9432"),
        RemoteFile("t10k-images-idx3-ubyte.gz", _MNIST + "t10k-images-idx3-ubyte.gz",
                   "9fb629c4189551a2d022fa330f9573f3"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", _MNIST + "t10k-labels-idx1-ubyte.gz",
                   "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    class_names=tuple(str(d) for d in range(10)),
))

_CIFAR = "https://www.cs.toronto.edu/~kriz/"
_add(DatasetSpec(
    name="cifar10",
    source="cifar",
    files=(RemoteFile("cifar-10-python.tar.gz", _CIFAR + "cifar-10-python.tar.gz",
                      "c58f30108f718f92721af3b95e74349a"),),
))
_add(DatasetSpec(
    name="cifar100",
    source="cifar",
    files=(RemoteFile("cifar-100-python.tar.gz", _CIFAR + "cifar-100-python.tar.gz",
                      "eb9058c3a382ffc7106e4002c42a8d85"),),
))
# Sources with no remote files: data ships with scikit-learn, or lives at a user's path.
_add(DatasetSpec(name="digits", source="digits", class_names=tuple(str(d) for d in range(10))))
_add(DatasetSpec(name="imagefolder", source="imagefolder"))
_add(DatasetSpec(name="splitlist", source="splitlist"))
