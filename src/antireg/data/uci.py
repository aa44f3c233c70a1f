"""Tabular regression data for v4 Exp 5 and Kobak et al. (2020): California housing, abalone,
wine quality, energy efficiency, liver.toxicity.

Every file is described by a :class:`~antireg.data.files.FileSpec` carrying the sha256 of
``../shared/data/MANIFEST.md`` and read through :func:`~antireg.data.files.require`, so a missing
or corrupt file is one :class:`DataError` naming the path and the fix, and ``download=True``
fetches it from its official source. Values are returned exactly as stored (no scaling: the
split protocol or the experiment standardises); categorical columns are one-hot encoded.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import Dataset
from .files import DataError, FileSpec, checksum_problem, extract_tar, require
from .files import download as download_file

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/"


def _parse(path: Path, label: str, what: str, read: Callable[[], Any]) -> Any:
    """Run a parser; any failure becomes one DataError naming the file and the expected format."""
    try:
        return read()
    except DataError:
        raise
    except Exception as e:  # parsers raise many types (ValueError, KeyError, zipfile errors, ...)
        raise DataError(f"{label} file {path} could not be read as {what}: {e}. The file is damaged; "
                        f"delete it and download it again (load_dataset(..., download=True)).") from e


def _expect_shape(values: np.ndarray, shape: tuple[int, int], label: str, path: Path) -> np.ndarray:
    if values.shape != shape:
        raise DataError(f"{label} file {path} has shape {values.shape}, expected {shape}; "
                        f"it is not the genuine file")
    return values


# ------------------------------------------------------------------ California housing
# The official source is the archive cal_housing.tgz (sha256 as pinned by scikit-learn's
# fetch_california_housing); its member CaliforniaHousing/cal_housing.data is the file read here.
CALIFORNIA_ARCHIVE = FileSpec(
    "California housing", "california_housing/cal_housing.tgz", "https://ndownloader.figshare.com/files/5976036",
    sha256="aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681")
CALIFORNIA_MEMBER = "CaliforniaHousing/cal_housing.data"
CALIFORNIA = FileSpec(
    "California housing", "california_housing/cal_housing.data", CALIFORNIA_ARCHIVE.url,
    sha256="a2b44dcc7e1c9091b43c4f458b25cbd1f7e8068d08edd26bc4703108d3fa6214",
    hint=f" The file is the member {CALIFORNIA_MEMBER} of that archive (cal_housing.tgz).")
CALIFORNIA_FEATURES = ("MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup",
                       "Latitude", "Longitude")


def _download_california(data_dir: Path) -> None:
    """Fetch and verify the official archive, verify its member, move the member into place."""
    archive = data_dir / CALIFORNIA_ARCHIVE.relpath
    download_file(CALIFORNIA_ARCHIVE, archive)
    try:
        with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
            extract_tar(archive, Path(tmp))
            member = Path(tmp) / CALIFORNIA_MEMBER
            if not member.is_file():
                raise DataError(f"California housing archive {archive} has no member {CALIFORNIA_MEMBER}")
            problem = checksum_problem(member, CALIFORNIA)
            if problem:
                raise DataError(f"California housing member {CALIFORNIA_MEMBER} of {archive} failed "
                                f"verification: {problem}. Nothing was saved.")
            os.replace(member, data_dir / CALIFORNIA.relpath)
    finally:
        archive.unlink(missing_ok=True)


def load_california(data_dir: Path, download: bool = False, verify: bool = True) -> Dataset:
    """California housing (Pace & Barry 1997), 20640 block groups x 8, as scikit-learn presents it.

    From the raw columns (longitude, latitude, age, rooms, bedrooms, population, households,
    income, value): rooms, bedrooms and population are divided by households, and the target
    is the median house value in units of 100,000 USD (``fetch_california_housing``).
    """
    path = data_dir / CALIFORNIA.relpath
    if download and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        _download_california(data_dir)
    path = require(CALIFORNIA, data_dir, check=verify)
    raw = _parse(path, "California housing", "a comma-separated numeric table",
                 lambda: np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2))
    raw = _expect_shape(raw, (20640, 9), "California housing", path)
    lon, lat, age, rooms, bedrooms, population, households, income, value = raw.T
    X = np.column_stack([income, age, rooms / households, bedrooms / households, population,
                         population / households, lat, lon])
    return Dataset("california", X, value / 1e5, "regression", feature_names=CALIFORNIA_FEATURES)


# ----------------------------------------------------------------------------- abalone
ABALONE = FileSpec("Abalone", "abalone/abalone.data", UCI + "abalone/abalone.data",
                   sha256="de37cdcdcaaa50c309d514f248f7c2302a5f1f88c168905eba23fe2fbc78449f")
ABALONE_SEXES = ("F", "I", "M")
ABALONE_NUMERIC = ("Length", "Diameter", "Height", "Whole_weight", "Shucked_weight", "Viscera_weight",
                   "Shell_weight")


def _read_abalone(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    frame = pd.read_csv(path, header=None)
    if frame.shape != (4177, 9) or not set(frame[0]) <= set(ABALONE_SEXES):
        raise ValueError(f"shape {frame.shape}, expected (4177, 9) with Sex in M/F/I")
    return frame[0].to_numpy(str), frame.iloc[:, 1:].to_numpy(np.float64)


def load_abalone(data_dir: Path, download: bool = False, verify: bool = True) -> Dataset:
    """UCI Abalone (Nash et al. 1994): 4177 x 10, Sex one-hot (F, I, M) then 7 measurements;
    target Rings (age in years is Rings + 1.5). The three indicators sum to 1, so with an
    intercept the centred design has rank 9 (antireg's spectra drop the zero direction)."""
    path = require(ABALONE, data_dir, download_missing=download, check=verify)
    sex, values = _parse(path, "Abalone", "a comma-separated table Sex,7 measurements,Rings",
                         lambda: _read_abalone(path))
    onehot = (sex[:, None] == np.array(ABALONE_SEXES)[None, :]).astype(np.float64)
    return Dataset("abalone", np.column_stack([onehot, values[:, :-1]]), values[:, -1], "regression",
                   feature_names=tuple(f"Sex_{s}" for s in ABALONE_SEXES) + ABALONE_NUMERIC)


# ------------------------------------------------------------------------ wine quality
WINE = {
    "red": FileSpec("Wine quality", "wine_quality/winequality-red.csv", UCI + "wine-quality/winequality-red.csv",
                    sha256="4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e"),
    "white": FileSpec("Wine quality", "wine_quality/winequality-white.csv",
                      UCI + "wine-quality/winequality-white.csv",
                      sha256="76c3f809815c17c07212622f776311faeb31e87610d52c26d87d6e361b169836"),
}
WINE_ROWS = {"red": 1599, "white": 4898}


def _read_wine(path: Path, colour: str) -> tuple[np.ndarray, tuple[str, ...]]:
    import pandas as pd

    frame = pd.read_csv(path, sep=";")
    if frame.shape != (WINE_ROWS[colour], 12) or frame.columns[-1] != "quality":
        raise ValueError(f"shape {frame.shape} with last column {frame.columns[-1]!r}, "
                         f"expected ({WINE_ROWS[colour]}, 12) ending in 'quality'")
    return frame.to_numpy(np.float64), tuple(str(c) for c in frame.columns[:-1])


def load_wine(data_dir: Path, download: bool = False, verify: bool = True, colour: str = "both") -> Dataset:
    """UCI Wine Quality (Cortez et al. 2009), target quality (0-10).

    ``colour``: "red" (1599 x 11), "white" (4898 x 11) or "both" (6497 x 12: red rows then
    white rows, with a last column ``is_red`` = 1 for red wine), as v4 Exp 5 uses it.
    """
    if colour not in ("red", "white", "both"):
        raise DataError(f"wine colour must be 'red', 'white' or 'both', got {colour!r}")
    parts, names = [], ()
    for c in ("red", "white") if colour == "both" else (colour,):
        path = require(WINE[c], data_dir, download_missing=download, check=verify)
        values, names = _parse(path, "Wine quality", "a ';'-separated table with a header",
                               lambda path=path, c=c: _read_wine(path, c))
        if colour == "both":
            values = np.column_stack([values[:, :-1], np.full(len(values), float(c == "red")), values[:, -1]])
        parts.append(values)
    values = np.concatenate(parts)
    names = names + (("is_red",) if colour == "both" else ())
    return Dataset(f"wine_{colour}" if colour != "both" else "wine", values[:, :-1], values[:, -1],
                   "regression", feature_names=names)


# ------------------------------------------------------------------- energy efficiency
# sha256 of the 768 x 10 cell values (little-endian float64, row-major, X1..X8, Y1, Y2): copies of
# the workbook re-saved by Excel differ in bytes but not in values (as for Concrete).
ENERGY_VALUES_SHA256 = "9911e8d48851b4c8189c02346a26d6f42eadf7a56c43ccc4331f7ab9c4f75fa4"
ENERGY_FEATURES = ("relative_compactness", "surface_area", "wall_area", "roof_area", "overall_height",
                   "orientation", "glazing_area", "glazing_area_distribution")
ENERGY_TARGETS = {"Y1": "heating_load", "Y2": "cooling_load"}


def _read_energy(path: Path) -> np.ndarray:
    """The first sheet's 768 x 10 numeric block (openpyxl; the used range includes empty formatted cells)."""
    try:
        import openpyxl
    except ImportError as e:  # a runtime dependency, but say how to fix a broken install
        raise DataError("reading the energy efficiency workbook needs openpyxl: pip install openpyxl") from e

    def read() -> np.ndarray:
        book = openpyxl.load_workbook(io.BytesIO(path.read_bytes()), read_only=True, data_only=True)
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = [str(h).strip() for h in next(rows)[:10]]
        if header != [f"X{i}" for i in range(1, 9)] + ["Y1", "Y2"]:
            raise ValueError(f"header {header}, expected X1..X8, Y1, Y2")
        data = [r[:10] for r in rows if r[:10] and all(v is not None for v in r[:10])]
        return np.array(data, dtype="<f8")

    return _expect_shape(_parse(path, "Energy efficiency", "an .xlsx workbook", read), (768, 10),
                         "Energy efficiency", path)


def _energy_values_match(path: Path) -> bool:
    """True when the workbook's cell values are those of the genuine data set."""
    try:
        values = _read_energy(path)
    except DataError:
        return False
    return hashlib.sha256(values.tobytes()).hexdigest() == ENERGY_VALUES_SHA256


ENERGY = FileSpec("Energy efficiency", "energy_efficiency/ENB2012_data.xlsx", UCI + "00242/ENB2012_data.xlsx",
                  sha256="0089fcffc1415e41e2ff63730cca5280efe54fc43d722dfde1b0aaa808e35dc4",
                  accept=_energy_values_match)


def load_energy(data_dir: Path, download: bool = False, verify: bool = True, target: str = "Y1") -> Dataset:
    """UCI Energy Efficiency (Tsanas & Xifara 2012): 768 buildings x 8 inputs; target Y1
    (heating load, the default) or Y2 (cooling load)."""
    if target not in ENERGY_TARGETS:
        raise DataError(f"energy target must be 'Y1' (heating load) or 'Y2' (cooling load), got {target!r}")
    path = require(ENERGY, data_dir, download_missing=download, check=verify)
    values = _read_energy(path)
    return Dataset("energy", values[:, :8], values[:, 8 if target == "Y1" else 9], "regression",
                   feature_names=ENERGY_FEATURES, meta={"target": ENERGY_TARGETS[target]})


# ---------------------------------------------------------------------- liver.toxicity
_KOBAK = "https://raw.githubusercontent.com/dkobak/high-dim-ridge/aa9c204a401fc98c5d0b8a3a2dfdd42f9d86257a/data/"
LIVER_GENES = FileSpec("liver.toxicity", "liver_toxicity/livertoxicity-gene.txt", _KOBAK + "livertoxicity-gene.txt",
                       sha256="3794d80530b60bdf933b13d9f50e284abdf33e55394b8651eb20b17fde8dd360")
LIVER_CLINIC = FileSpec("liver.toxicity", "liver_toxicity/livertoxicity-clinic.txt",
                        _KOBAK + "livertoxicity-clinic.txt",
                        sha256="8e3f5e9b48ecc85c8d78fa912f1346374ddc4cf43543f133ae9d2969067083ad")
# mixOmics' order of liver.toxicity$clinic
LIVER_RESPONSES = ("BUN", "creatinine", "total_protein", "albumin", "ALT", "SDH", "AST", "ALP", "TBA",
                   "cholesterol")


def read_liver(data_dir: Path, download: bool = False, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(genes (64, 3116), clinic (64, 10)) of mixOmics' liver.toxicity, verified."""
    out = []
    for spec, shape in ((LIVER_GENES, (64, 3116)), (LIVER_CLINIC, (64, 10))):
        path = require(spec, data_dir, download_missing=download, check=verify)
        values = _parse(path, "liver.toxicity", "a space-separated numeric table",
                        lambda path=path: np.loadtxt(path, dtype=np.float64, ndmin=2))
        out.append(_expect_shape(values, shape, "liver.toxicity", path))
    return out[0], out[1]


def load_liver_toxicity(data_dir: Path, download: bool = False, verify: bool = True,
                        target: str = "BUN") -> Dataset:
    """liver.toxicity (mixOmics; Kobak, Lomond & Sanchez 2020): 64 rats x 3116 gene expressions;
    target one of the 10 clinical responses (``LIVER_RESPONSES``, default "BUN"); all 10 are in
    ``meta["responses"]`` (64 x 10) with their names in ``meta["response_names"]``."""
    if target not in LIVER_RESPONSES:
        raise DataError(f"liver_toxicity target must be one of {', '.join(LIVER_RESPONSES)}, got {target!r}")
    genes, clinic = read_liver(data_dir, download, verify)
    return Dataset("liver_toxicity", genes, clinic[:, LIVER_RESPONSES.index(target)], "regression",
                   feature_names=tuple(f"gene{j}" for j in range(genes.shape[1])),
                   meta={"responses": clinic, "response_names": LIVER_RESPONSES, "target": target})
