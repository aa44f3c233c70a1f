"""Tabular regression data: UCI Concrete and Airfoil, sklearn diabetes, synthetic."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import xlrd

from .dataset import Dataset, check_int, check_number
from .files import DataError, FileSpec, require

# sha256 of the 1030x9 cell values (little-endian float64, row-major, target last)
# of the genuine workbook. Excel rewrites metadata bytes whenever it opens the
# file, so genuine copies differ in bytes; their values do not.
CONCRETE_VALUES_SHA256 = "8b9a7af0366e0f437ad04cfba6bb729ec0c3ea76fa780ff3d3f4d057356b6af6"


def _read_concrete(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Parse the workbook's first sheet into a (1030, 9) float64 array and its headers."""
    try:
        # xlrd directly rather than pandas.read_excel, whose xlrd engine is deprecated.
        book = xlrd.open_workbook(str(path), logfile=io.StringIO())  # logfile: keep xlrd's warnings off stdout
        sheet = book.sheet_by_index(0)
        header = tuple(str(h).strip() for h in sheet.row_values(0))
        values = np.array([sheet.row_values(i) for i in range(1, sheet.nrows)], dtype="<f8")
    except Exception as e:  # xlrd raises many types (XLRDError, struct.error, ...) on corrupt files
        raise DataError(f"Concrete file {path} could not be read as an Excel workbook: {e}") from e
    if values.shape != (1030, 9) or np.isnan(values).any():
        raise DataError(f"Concrete file {path} has {values.shape} numeric cells, expected (1030, 9)")
    return values, header


def _concrete_values_match(path: Path) -> bool:
    """True when the workbook's cell values are those of the genuine data set."""
    try:
        values, _ = _read_concrete(path)
    except DataError:
        return False
    return hashlib.sha256(values.tobytes()).hexdigest() == CONCRETE_VALUES_SHA256


CONCRETE = FileSpec(
    label="Concrete",
    relpath="concrete/Concrete_Data.xls",
    url="https://archive.ics.uci.edu/ml/machine-learning-databases/concrete/compressive/Concrete_Data.xls",
    sha256="0233dedd4c6f36b73ce7ffe2dd607eb5373ea74de1fe2a88c1b69fd69fabfad3",
    accept=_concrete_values_match,
)

AIRFOIL = FileSpec(
    label="Airfoil",
    relpath="airfoil/airfoil_self_noise.dat",
    url="https://archive.ics.uci.edu/ml/machine-learning-databases/00291/airfoil_self_noise.dat",
    sha256="74c75fd71783f1e6b71f8a622b993dc592897a97cd689c5090a07147a1b097b3",
)

AIRFOIL_FEATURES = (
    "frequency_hz",
    "angle_of_attack_deg",
    "chord_length_m",
    "free_stream_velocity_m_s",
    "suction_side_displacement_thickness_m",
)


def load_concrete(data_dir: Path, download: bool = False, verify: bool = True) -> Dataset:
    """UCI Concrete Compressive Strength: 1030 x 8 mixture inputs, strength (MPa) target."""
    path = require(CONCRETE, data_dir, download_missing=download, check=verify)
    values, header = _read_concrete(path)
    return Dataset("concrete", values[:, :-1], values[:, -1], "regression",
                   feature_names=header[:-1])


def load_airfoil(data_dir: Path, download: bool = False, verify: bool = True) -> Dataset:
    """UCI Airfoil Self-Noise: 1503 x 5 inputs, scaled sound pressure level (dB) target."""
    path = require(AIRFOIL, data_dir, download_missing=download, check=verify)
    try:
        with warnings.catch_warnings():  # an empty file warns, then fails the column check below
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataError(f"Airfoil file {path} is not a tab-separated numeric table: {e}") from e
    if values.shape[1] != 6:
        raise DataError(f"Airfoil file {path} has {values.shape[1]} columns, expected 6")
    return Dataset("airfoil", values[:, :-1], values[:, -1], "regression",
                   feature_names=AIRFOIL_FEATURES)


def load_diabetes() -> Dataset:
    """sklearn's bundled diabetes data (442 x 10), unscaled, as in the original study."""
    from sklearn.datasets import load_diabetes  # here, not at import: sklearn.datasets takes ~1 s to import

    bunch = load_diabetes(scaled=False)
    return Dataset("diabetes", bunch.data.astype(np.float64), bunch.target.astype(np.float64),
                   "regression", feature_names=tuple(bunch.feature_names))


def make_synthetic(n: int = 1000, d: int = 20, noise: float = 0.5, seed: int = 0) -> Dataset:
    """Linear-Gaussian regression: x ~ N(0, I_d), y = x . coef + noise * N(0, 1).

    coef ~ N(0, I_d / d), so the signal x . coef has variance about 1 and the
    signal-to-noise ratio is about 1 / noise**2. The true coefficients are in
    ``dataset.meta["coef"]``; there is no intercept. The same arguments give
    identical arrays.
    """
    n, d = check_int(n, "synthetic n", 1), check_int(d, "synthetic d", 1)
    seed, noise = check_int(seed, "synthetic seed"), check_number(noise, "synthetic noise")
    if not 0 <= noise < np.inf:
        raise DataError(f"synthetic noise must be finite and >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    coef = rng.normal(0.0, 1.0 / np.sqrt(d), size=d)
    X = rng.normal(size=(n, d))
    y = X @ coef + noise * rng.normal(size=n)
    return Dataset("synthetic", X, y, "regression",
                   feature_names=tuple(f"x{i}" for i in range(d)),
                   meta={"coef": coef, "noise": noise, "seed": seed})
