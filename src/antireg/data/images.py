"""Image classification data: MNIST (IDX files), CIFAR-10 (python batches), sklearn digits.

Images are returned as float32 in [0, 1] with shape (n, C, H, W). ``mnist`` holds the
60000 official training images followed by the 10000 official test (t10k) images and
marks the latter as its own test set, ``meta["test_rows"]``: the split keeps exactly those
rows for testing and draws validation and training only from the training files, so the
two are disjoint by construction. CIFAR-10's train and test batches are pooled into one
data set, which :func:`antireg.data.make_split` divides like any other. ``mnist_t10k``
is the 10000 official test images alone, for machines without the MNIST training
images, and ``mnist_train`` the 60000 official training images alone (Kobak's MNIST
experiment draws its training sets from them and tests on t10k).
"""

from __future__ import annotations

import codecs
import gzip
import math
import os
import pickle
import tempfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from .dataset import Dataset
from .files import DataError, FileSpec, extract_tar, require

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct


def _unit_images(images: np.ndarray, max_value: float, shape: tuple[int, int, int]) -> np.ndarray:
    """Integer pixels -> float32 in [0, 1] with shape (n, C, H, W)."""
    X = images.astype(np.float32).reshape(len(images), *shape)
    X /= max_value
    return X


# ----------------------------------------------------------------------------- MNIST

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_TRAIN_HINT = " Without the MNIST training files, use the data set 'mnist_t10k' (the 10000 official test images)."


def _mnist_spec(filename: str, **digest: str) -> FileSpec:
    hint = _TRAIN_HINT if filename.startswith("train") else ""
    return FileSpec("MNIST", f"mnist/{filename}", MNIST_URL + filename, hint=hint, **digest)


# (images, labels) per official part. For the training images LeCun published only the md5;
# the sha256 is the one public MNIST loaders pin (../shared/data/MANIFEST.md).
MNIST_FILES = {
    "train": (
        _mnist_spec("train-images-idx3-ubyte.gz",
                    sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        _mnist_spec("train-labels-idx1-ubyte.gz",
                    sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    ),
    "t10k": (
        _mnist_spec("t10k-images-idx3-ubyte.gz",
                    sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        _mnist_spec("t10k-labels-idx1-ubyte.gz",
                    sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
}
IDX_IMAGES, IDX_LABELS = 0x803, 0x801  # magic numbers: uint8 data, 3 and 1 dimensions


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes, checking its magic number and size."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # bad gzip header, truncated stream, bad CRC
        raise DataError(f"MNIST file {path} is not a readable gzip file: {e}") from e
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"MNIST file {path} does not start with the IDX magic number {magic:#x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body, expected = raw[header:], math.prod(dims)  # exact: np.prod wraps at 2**63
    if len(body) != expected:
        raise DataError(f"MNIST file {path} holds {len(body)} bytes of data, its header {dims} says {expected}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _load_mnist(name: str, parts: tuple[str, ...], data_dir: Path, download: bool, verify: bool,
                test_part: str | None = None) -> Dataset:
    """The official ``parts`` in order; the rows of ``test_part`` become ``meta["test_rows"]``."""
    images, labels, meta = [], [], {}
    for part in parts:
        image_spec, label_spec = MNIST_FILES[part]
        x = read_idx(require(image_spec, data_dir, download_missing=download, check=verify), IDX_IMAGES)
        y = read_idx(require(label_spec, data_dir, download_missing=download, check=verify), IDX_LABELS)
        if len(x) != len(y) or x.shape[1:] != (28, 28) or y.max(initial=0) > 9:
            raise DataError(f"MNIST {part} files under {data_dir / 'mnist'} do not match: "
                            f"images {x.shape}, labels {y.shape} with maximum {y.max(initial=0)}")
        if part == test_part:
            start = sum(map(len, images))
            meta["test_rows"] = range(start, start + len(x))
        images.append(x)
        labels.append(y)
    return Dataset(name, _unit_images(np.concatenate(images), 255.0, (1, 28, 28)),
                   np.concatenate(labels).astype(np.int64), "classification", n_classes=10, meta=meta)


def load_mnist(data_dir: Path, download: bool = False, verify: bool = True) -> Dataset:
    """MNIST as published: the official training file (60000 images, rows 0..59999) then the
    official test file (10000 t10k images, rows 60000..69999), 70000 x 1 x 28 x 28.

    ``meta["test_rows"]`` is ``range(60000, 70000)``: the split tests on exactly the t10k images
    and draws validation and training from the training file only.  Both files are verified by
    sha256 (``verify=True``); missing or corrupt training files are a DataError naming the path."""
    return _load_mnist("mnist", ("train", "t10k"), data_dir, download, verify, test_part="t10k")


def load_mnist_train(data_dir: Path, download: bool = False, verify: bool = True) -> Dataset:
    """MNIST's official training file alone (60000 x 1 x 28 x 28), e.g. a training pool tested on t10k."""
    return _load_mnist("mnist_train", ("train",), data_dir, download, verify)


def load_mnist_t10k(data_dir: Path, download: bool = False, verify: bool = True) -> Dataset:
    """MNIST's official test file alone (10000 x 1 x 28 x 28), for when the training images are absent."""
    return _load_mnist("mnist_t10k", ("t10k",), data_dir, download, verify)


# -------------------------------------------------------------------------- CIFAR-10

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_DIR = "cifar10/cifar-10-batches-py"
CIFAR_ARCHIVE = FileSpec("CIFAR-10", "cifar10/cifar-10-python.tar.gz", CIFAR_URL,
                         md5="c58f30108f718f92721af3b95e74349a")
# md5s published with the data set (the ones torchvision checks). batches.meta
# (class names) is not needed: labels are 0..9.
CIFAR_BATCHES = tuple(
    FileSpec("CIFAR-10", f"{CIFAR_DIR}/{name}", CIFAR_URL, md5=md5,
             hint=" The archive unpacks to cifar-10-batches-py/, which belongs in DATA_DIR/cifar10/.")
    for name, md5 in [
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ("test_batch", "40351d587109b95175f43aff81a1287e"),
    ]
)

# Everything a CIFAR batch pickle needs: numpy array reconstruction, and
# _codecs.encode, which Python 3 uses to write bytes into protocol-2 pickles.
# A pickle can call any global it names, so nothing else is admitted.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that can rebuild numpy arrays and plain containers and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch") from None


def restricted_load(f: IO[bytes]) -> Any:
    """Unpickle a CIFAR batch (Python 2 pickle: str keys become bytes) without running code."""
    return RestrictedUnpickler(f, encoding="bytes").load()


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (uint8 images (n, 3072), int64 labels (n,)) from one python-format batch."""
    try:
        with open(path, "rb") as f:
            batch = restricted_load(f)
    except Exception as e:  # untrusted bytes: unpickling raises many types on corrupt input
        raise DataError(f"CIFAR-10 file {path} is not a valid batch: {e}") from e
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 file {path} holds a {type(batch).__name__}, expected a dict batch")
    data = batch.get(b"data")
    try:
        labels = np.asarray(batch.get(b"labels", ()))
    except ValueError:  # a ragged nested list
        labels = np.zeros(0)
    valid = (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
             and data.shape[1] == 3072 and labels.shape == (len(data),)
             and labels.dtype.kind in "iu" and bool(np.all((labels >= 0) & (labels <= 9))))
    if not valid:
        raise DataError(f"CIFAR-10 file {path} lacks b'data' (uint8, n x 3072) and b'labels' (n ints 0..9)")
    return data, labels.astype(np.int64)


def _download_cifar(data_dir: Path) -> None:
    """Fetch and verify the official archive, then move its batch files into place."""
    archive = require(CIFAR_ARCHIVE, data_dir, download_missing=True)
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        extract_tar(archive, Path(tmp))
        extracted = Path(tmp) / "cifar-10-batches-py"
        target = data_dir / CIFAR_DIR
        target.mkdir(parents=True, exist_ok=True)
        for src in extracted.glob("*"):
            if not (target / src.name).exists():
                os.replace(src, target / src.name)
    archive.unlink()  # 170 MB that the batches now duplicate


def load_cifar10(data_dir: Path, download: bool = False, verify: bool = True) -> Dataset:
    """CIFAR-10, five training batches and the test batch pooled: 60000 x 3 x 32 x 32."""
    if download and not all((data_dir / s.relpath).is_file() for s in CIFAR_BATCHES):
        _download_cifar(data_dir)
    batches = [read_cifar_batch(require(s, data_dir, check=verify)) for s in CIFAR_BATCHES]
    data = np.concatenate([d for d, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    return Dataset("cifar10", _unit_images(data, 255.0, (3, 32, 32)), labels, "classification", n_classes=10)


# ---------------------------------------------------------------------------- digits

def load_digits() -> Dataset:
    """sklearn's bundled 8x8 digits (1797 images, pixel values 0..16) as 1797 x 1 x 8 x 8."""
    from sklearn.datasets import load_digits  # here, not at import: sklearn.datasets takes ~1 s to import

    bunch = load_digits()
    return Dataset("digits", _unit_images(bunch.images, 16.0, (1, 8, 8)),
                   bunch.target.astype(np.int64), "classification", n_classes=10)
