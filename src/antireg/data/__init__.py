"""Data sets and the train/validation/test protocol.

>>> ds = load_dataset("diabetes")
>>> split = make_split(ds, seed=0, fraction=0.2)

File-based data sets are read from a data directory (``data_dir`` argument,
else ``$ANTIREG_DATA_DIR``, else the per-user data folder of platformdirs) laid out as::

    concrete/Concrete_Data.xls
    airfoil/airfoil_self_noise.dat
    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch}
    california_housing/cal_housing.data
    abalone/abalone.data
    wine_quality/winequality-{red,white}.csv
    energy_efficiency/ENB2012_data.xlsx
    liver_toxicity/livertoxicity-{gene,clinic}.txt

Files are verified by checksum; ``download=True`` fetches missing ones over
HTTPS from the official sources (pooch; ``antireg data fetch NAME`` from the
command line). ``verify=False`` skips the checksums.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dataset import Dataset, Task
from .files import DataError, FileSpec, default_data_dir
from .images import (CIFAR_BATCHES, MNIST_FILES, load_cifar10, load_digits, load_mnist, load_mnist_t10k,
                     load_mnist_train)
from .split import Split, make_split, n_train_for
from .tabular import AIRFOIL, CONCRETE, load_airfoil, load_concrete, load_diabetes, make_synthetic
from .uci import (ABALONE, CALIFORNIA, ENERGY, LIVER_CLINIC, LIVER_GENES, WINE, load_abalone, load_california,
                  load_energy, load_liver_toxicity, load_wine)

__all__ = [
    "DATASETS", "DataError", "Dataset", "DatasetInfo", "Split", "default_data_dir",
    "load_dataset", "make_split", "make_synthetic", "n_train_for",
]


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: the task, the files read (empty for bundled or generated data), the loader."""

    task: Task
    files: tuple[FileSpec, ...]
    loader: Callable[..., Dataset]
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "concrete": DatasetInfo("regression", (CONCRETE,), load_concrete, "UCI Concrete, 1030 x 8"),
    "airfoil": DatasetInfo("regression", (AIRFOIL,), load_airfoil, "UCI Airfoil Self-Noise, 1503 x 5"),
    "diabetes": DatasetInfo("regression", (), load_diabetes, "sklearn diabetes, 442 x 10 (bundled)"),
    "synthetic": DatasetInfo("regression", (), make_synthetic, "linear-Gaussian; options n, d, noise, seed"),
    "digits": DatasetInfo("classification", (), load_digits, "sklearn digits, 1797 x 1 x 8 x 8 (bundled)"),
    "mnist": DatasetInfo("classification", MNIST_FILES["train"] + MNIST_FILES["t10k"], load_mnist,
                         "MNIST official train (60000) then t10k (10000, its own test set), 70000 x 1 x 28 x 28"),
    "mnist_t10k": DatasetInfo("classification", MNIST_FILES["t10k"], load_mnist_t10k,
                              "MNIST official test images only, 10000 x 1 x 28 x 28"),
    "mnist_train": DatasetInfo("classification", MNIST_FILES["train"], load_mnist_train,
                               "MNIST official training images only, 60000 x 1 x 28 x 28"),
    "cifar10": DatasetInfo("classification", CIFAR_BATCHES, load_cifar10,
                           "CIFAR-10 train + test pooled, 60000 x 3 x 32 x 32"),
    "california": DatasetInfo("regression", (CALIFORNIA,), load_california,
                              "California housing (sklearn form), 20640 x 8"),
    "abalone": DatasetInfo("regression", (ABALONE,), load_abalone, "UCI Abalone, 4177 x 10 (Sex one-hot), Rings"),
    "wine": DatasetInfo("regression", (WINE["red"], WINE["white"]), load_wine,
                        "UCI Wine Quality red + white, 6497 x 12 (is_red); option colour"),
    "energy": DatasetInfo("regression", (ENERGY,), load_energy,
                          "UCI Energy Efficiency, 768 x 8, Y1 heating load; option target='Y2'"),
    "liver_toxicity": DatasetInfo("regression", (LIVER_GENES, LIVER_CLINIC), load_liver_toxicity,
                                  "mixOmics liver.toxicity, 64 x 3116 genes; option target (10 responses)"),
}


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = False,
                 **options: Any) -> Dataset:
    """Load a registered data set by name.

    Args:
        name: one of ``DATASETS``.
        data_dir: folder holding the files; default :func:`default_data_dir`.
            Ignored by bundled and generated data sets.
        download: fetch missing files from the official source (HTTPS only).
        options: passed to the loader: ``verify=False`` for file-based data sets;
            ``n``, ``d``, ``noise``, ``seed`` for "synthetic".

    Raises:
        DataError: unknown name, or a file missing, corrupt or unreadable.
    """
    info = DATASETS.get(name)
    if info is None:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    accepted = set(inspect.signature(info.loader).parameters) - {"data_dir", "download"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DataError(f"data set {name!r} does not take option(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(accepted)) or 'none'}")
    if not info.files:
        return info.loader(**options)
    return info.loader(Path(data_dir) if data_dir is not None else default_data_dir(),
                       download=download, **options)
