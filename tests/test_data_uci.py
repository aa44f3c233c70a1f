"""The UCI / Kobak loaders (antireg.data.uci) against the facts in ../shared/data/MANIFEST.md,
and their errors for missing, corrupt and damaged files; MNIST's official training split."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

import antireg.data.files as files
import antireg.data.uci as uci
from antireg.data import DATASETS, DataError, load_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANTIREG_DATA_DIR") or REPO.parent / "shared" / "data")

CAL = "california_housing/cal_housing.data"
ABALONE = "abalone/abalone.data"
RED, WHITE = "wine_quality/winequality-red.csv", "wine_quality/winequality-white.csv"
ENERGY = "energy_efficiency/ENB2012_data.xlsx"
GENES, CLINIC = "liver_toxicity/livertoxicity-gene.txt", "liver_toxicity/livertoxicity-clinic.txt"


def genuine(*relpaths: str) -> Path:
    for rel in relpaths:
        if not (SHARED / rel).is_file():
            pytest.skip(f"genuine data file {SHARED / rel} not available (set ANTIREG_DATA_DIR)")
    return SHARED


def copy_to(tmp: Path, *relpaths: str) -> Path:
    src = genuine(*relpaths)
    for rel in relpaths:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, tmp / rel)
    return tmp


# ------------------------------------------------------------------ genuine files vs MANIFEST

def test_california_matches_manifest():
    ds = load_dataset("california", genuine(CAL))
    assert ds.X.shape == (20640, 8) and ds.feature_names[0] == "MedInc"
    # MANIFEST: sklearn's describe() means, to every printed digit
    np.testing.assert_allclose(ds.X.mean(axis=0), [3.870671, 28.639486, 5.429000, 1.096675, 1425.476744,
                                                   3.070655, 35.631861, -119.569704], atol=6e-7, rtol=0)
    assert ds.y.mean() == pytest.approx(2.068558, abs=1e-6) and ds.y.std(ddof=1) == pytest.approx(1.153956, abs=1e-6)
    assert (ds.y.min(), ds.y.max()) == (pytest.approx(0.14999), pytest.approx(5.00001))
    assert ds.y[0] == pytest.approx(4.526) and ds.X[0, 0] == pytest.approx(8.3252)  # first row


def test_abalone_matches_manifest():
    ds = load_dataset("abalone", genuine(ABALONE))
    assert ds.X.shape == (4177, 10)
    assert ds.X[:, :3].sum(axis=0).tolist() == [1307, 1342, 1528]  # F, I, M
    assert np.all(ds.X[:, :3].sum(axis=1) == 1)
    np.testing.assert_allclose(ds.X[:, 3:].mean(axis=0), [0.524, 0.408, 0.140, 0.829, 0.359, 0.181, 0.239],
                               atol=5e-4)
    assert ds.y.mean() == pytest.approx(9.934, abs=5e-4) and ds.y.std(ddof=1) == pytest.approx(3.224, abs=5e-4)
    assert (ds.y.min(), ds.y.max()) == (1, 29)
    np.testing.assert_array_equal(ds.X[0], [0, 0, 1, 0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15])


def test_wine_matches_manifest():
    root = genuine(RED, WHITE)
    red, white = load_dataset("wine", root, colour="red"), load_dataset("wine", root, colour="white")
    assert red.X.shape == (1599, 11) and white.X.shape == (4898, 11)
    assert red.y.mean() == pytest.approx(5.6360, abs=5e-5) and white.y.mean() == pytest.approx(5.8779, abs=5e-5)
    assert np.bincount(red.y.astype(int))[3:].tolist() == [10, 53, 681, 638, 199, 18]
    assert np.bincount(white.y.astype(int))[3:].tolist() == [20, 163, 1457, 2198, 880, 175, 5]
    np.testing.assert_array_equal(red.X[0], [7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4])
    both = load_dataset("wine", root)
    assert both.X.shape == (6497, 12) and both.feature_names[-1] == "is_red"
    assert both.X[:, -1].sum() == 1599 and both.X[:1599, -1].all()
    np.testing.assert_array_equal(both.X[1599:, :-1], white.X)
    with pytest.raises(DataError, match="colour"):
        load_dataset("wine", root, colour="rose")


def test_energy_matches_manifest():
    ds = load_dataset("energy", genuine(ENERGY))
    assert ds.X.shape == (768, 8)
    np.testing.assert_allclose(ds.X.mean(axis=0), [0.7642, 671.7083, 318.5, 176.6042, 5.25, 3.5, 0.2344, 2.8125],
                               atol=5e-5)
    assert ds.y.mean() == pytest.approx(22.3072, abs=5e-5) and (ds.y.min(), ds.y.max()) == (6.01, 43.1)
    y2 = load_dataset("energy", SHARED, target="Y2").y
    assert y2.mean() == pytest.approx(24.5878, abs=5e-5) and (y2.min(), y2.max()) == (10.9, 48.03)
    with pytest.raises(DataError, match="Y1"):
        load_dataset("energy", SHARED, target="Y3")


def test_liver_toxicity_matches_manifest():
    ds = load_dataset("liver_toxicity", genuine(GENES, CLINIC))
    assert ds.X.shape == (64, 3116) and (ds.X.min(), ds.X.max()) == (-1.67499, 2.0)
    clinic = ds.meta["responses"]
    assert clinic.shape == (64, 10)
    np.testing.assert_array_equal(clinic[0], [12, 0.6, 7.3, 4.9, 73, 23, 87, 320, 9, 85])
    np.testing.assert_allclose(clinic.mean(axis=0), [17.04, 0.688, 7.475, 5.014, 1677.8, 79.80, 3375.3,
                                                     338.2, 20.27, 82.63], rtol=5e-4)
    np.testing.assert_array_equal(ds.y, clinic[:, 0])
    np.testing.assert_array_equal(load_dataset("liver_toxicity", SHARED, target="AST").y, clinic[:, 6])
    with pytest.raises(DataError, match="cholesterol"):
        load_dataset("liver_toxicity", SHARED, target="glucose")


def test_mnist_train_is_the_official_training_split():
    ds = load_dataset("mnist_train", genuine("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"))
    assert ds.X.shape == (60000, 1, 28, 28) and (ds.X.min(), ds.X.max()) == (0.0, 1.0)
    assert np.bincount(ds.y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# ------------------------------------------------------------------ missing / corrupt / damaged

@pytest.mark.parametrize("name", ["california", "abalone", "wine", "energy", "liver_toxicity", "mnist_train"])
def test_missing_file_names_path_and_fix(tmp_path, name):
    with pytest.raises(DataError) as info:
        load_dataset(name, tmp_path)
    msg = str(info.value)
    assert str(tmp_path / DATASETS[name].files[0].relpath) in msg and "ANTIREG_DATA_DIR" in msg and "https://" in msg


@pytest.mark.parametrize("name, rel", [("california", CAL), ("abalone", ABALONE), ("wine", RED),
                                       ("liver_toxicity", CLINIC)])
def test_changed_byte_fails_checksum(tmp_path, name, rel):
    root = copy_to(tmp_path, *{f.relpath for f in DATASETS[name].files})
    raw = bytearray((root / rel).read_bytes())
    raw[60] = ord("7") if raw[60] != ord("7") else ord("8")  # one digit changed: still parses
    (root / rel).write_bytes(bytes(raw))
    with pytest.raises(DataError, match=f"{tmp_path / rel} failed verification.*sha256"):
        load_dataset(name, root)


@pytest.mark.parametrize("name, rel, what", [("california", CAL, "shape|numeric"), ("abalone", ABALONE, "table"),
                                             ("wine", WHITE, "table"), ("liver_toxicity", GENES, "shape|numeric")])
def test_truncated_file_is_a_parse_error_without_verification(tmp_path, name, rel, what):
    root = copy_to(tmp_path, *{f.relpath for f in DATASETS[name].files})
    raw = (root / rel).read_bytes()
    (root / rel).write_bytes(raw[: len(raw) // 2].rsplit(b"\n", 1)[0] + b"\n")  # whole rows missing
    with pytest.raises(DataError, match="failed verification"):
        load_dataset(name, root)
    with pytest.raises(DataError, match=what):
        load_dataset(name, root, verify=False)


def test_energy_resaved_passes_by_values_but_changed_value_fails(tmp_path):
    import openpyxl

    root = copy_to(tmp_path, ENERGY)
    path = root / ENERGY
    book = openpyxl.load_workbook(path)
    book.save(path)  # a re-save: other bytes, the same values
    assert hashlib.sha256(path.read_bytes()).hexdigest() != uci.ENERGY.sha256
    np.testing.assert_array_equal(load_dataset("energy", root).X, load_dataset("energy", SHARED).X)
    book.worksheets[0]["I2"] = 15.56  # Y1 of the first building is 15.55
    book.save(path)
    with pytest.raises(DataError, match="do not match the genuine values"):
        load_dataset("energy", root)
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="xlsx"):
        load_dataset("energy", root, verify=False)


# ------------------------------------------------------------------ download (fetch replaced by a local copy)

@pytest.fixture
def serve(monkeypatch):
    """files.fetch copies a local file per URL instead of using the network; records the URLs."""
    asked: list[str] = []

    def use(sources: dict[str, Path]) -> list[str]:
        def fake_fetch(url: str, dest: Path) -> None:
            asked.append(url)
            shutil.copyfile(sources[url], dest)
        monkeypatch.setattr(files, "fetch", fake_fetch)
        return asked

    return use


def test_download_liver_toxicity(tmp_path, serve):
    root = genuine(GENES, CLINIC)
    asked = serve({uci.LIVER_GENES.url: root / GENES, uci.LIVER_CLINIC.url: root / CLINIC})
    ds = load_dataset("liver_toxicity", tmp_path, download=True)
    assert ds.X.shape == (64, 3116) and len(asked) == 2 and all(u.startswith("https://") for u in asked)


def _tgz(tmp: Path, member_bytes: bytes) -> Path:
    archive = tmp / "cal_housing.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(uci.CALIFORNIA_MEMBER)
        info.size = len(member_bytes)
        tar.addfile(info, io.BytesIO(member_bytes))
    return archive


def test_download_california_extracts_the_verified_member(tmp_path, serve, monkeypatch):
    good = genuine(CAL) / CAL
    archive = _tgz(tmp_path, good.read_bytes())
    # our test archive is not byte-identical to the published one: pin its own digest
    monkeypatch.setattr(uci, "CALIFORNIA_ARCHIVE", files.FileSpec(
        "California housing", uci.CALIFORNIA_ARCHIVE.relpath, uci.CALIFORNIA_ARCHIVE.url,
        sha256=files.file_digest(archive, "sha256")))
    asked = serve({uci.CALIFORNIA_ARCHIVE.url: archive})
    ds = load_dataset("california", tmp_path / "data", download=True)
    assert ds.X.shape == (20640, 8) and asked == [uci.CALIFORNIA_ARCHIVE.url]
    assert sorted(os.listdir(tmp_path / "data/california_housing")) == ["cal_housing.data"]  # archive removed


def test_download_california_with_a_wrong_member_leaves_nothing(tmp_path, serve, monkeypatch):
    archive = _tgz(tmp_path, b"-122.23,37.88,41,880,129,322,126,8.3252,452600\n")
    monkeypatch.setattr(uci, "CALIFORNIA_ARCHIVE", files.FileSpec(
        "California housing", uci.CALIFORNIA_ARCHIVE.relpath, uci.CALIFORNIA_ARCHIVE.url,
        sha256=files.file_digest(archive, "sha256")))
    serve({uci.CALIFORNIA_ARCHIVE.url: archive})
    with pytest.raises(DataError, match="failed verification"):
        load_dataset("california", tmp_path / "data", download=True)
    assert os.listdir(tmp_path / "data/california_housing") == []


def test_download_california_archive_checksum_is_checked(tmp_path, serve):
    archive = _tgz(tmp_path, b"x")
    serve({uci.CALIFORNIA_ARCHIVE.url: archive})
    with pytest.raises(DataError, match="download .* failed verification"):
        load_dataset("california", tmp_path / "data", download=True)
