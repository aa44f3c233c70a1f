"""Real data files, checksums, error messages, and the download path (without network).

The genuine files are looked up in $ANTIREG_DATA_DIR, else in ../shared/data next
to the repository; tests that need one skip when it is absent.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import antireg.data.files as files
from antireg.data import DATASETS, DataError, default_data_dir, load_dataset
from antireg.data.files import FileSpec, download

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANTIREG_DATA_DIR") or REPO.parent / "shared" / "data")

CONCRETE = "concrete/Concrete_Data.xls"
AIRFOIL = "airfoil/airfoil_self_noise.dat"
T10K = ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz")


def genuine(*relpaths: str) -> Path:
    """The shared data folder, or skip the test when a needed file is not in it."""
    for rel in relpaths:
        if not (SHARED / rel).is_file():
            pytest.skip(f"genuine data file {SHARED / rel} not available (set ANTIREG_DATA_DIR)")
    return SHARED


def copy_to(tmp: Path, *relpaths: str) -> Path:
    """Copy genuine files into a temporary data folder (to damage them safely)."""
    src = genuine(*relpaths)
    for rel in relpaths:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, tmp / rel)
    return tmp


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


# ------------------------------------------------------------------ genuine files


def test_concrete_matches_manifest():
    ds = load_dataset("concrete", genuine(CONCRETE))
    assert ds.X.shape == (1030, 8) and ds.y.shape == (1030,) and ds.X.dtype == np.float64
    assert (ds.X[:, 0].min(), ds.X[:, 0].max()) == (102, 540)  # cement
    assert (ds.X[:, 7].min(), ds.X[:, 7].max()) == (1, 365)  # age, days
    assert ds.y.min() == pytest.approx(2.33, abs=0.005) and ds.y.max() == pytest.approx(82.6, abs=0.005)
    assert ds.feature_names[0] == "Cement (component 1)(kg in a m^3 mixture)" and len(ds.feature_names) == 8


def test_airfoil_matches_manifest():
    ds = load_dataset("airfoil", genuine(AIRFOIL))
    assert ds.X.shape == (1503, 5) and ds.y.shape == (1503,)
    np.testing.assert_array_equal(ds.X[0], [800, 0, 0.3048, 71.3, 0.00266337])
    assert ds.y[0] == 126.201
    assert (ds.y.min(), ds.y.max()) == (103.38, 140.987)


def test_mnist_t10k_matches_manifest():
    ds = load_dataset("mnist_t10k", genuine(*T10K))
    assert ds.X.shape == (10000, 1, 28, 28) and ds.X.dtype == np.float32
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    assert np.bincount(ds.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_without_train_images_suggests_t10k(tmp_path):
    copy_to(tmp_path, *T10K, "mnist/train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="mnist_t10k") as info:
        load_dataset("mnist", tmp_path)
    assert str(tmp_path / "mnist/train-images-idx3-ubyte.gz") in str(info.value)


# --------------------------------------------------------------- missing / corrupt


@pytest.mark.parametrize("name", [n for n, info in DATASETS.items() if info.files])
def test_missing_file_error_names_path_and_fix(tmp_path, name):
    with pytest.raises(DataError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert str(tmp_path / DATASETS[name].files[0].relpath) in message
    assert "ANTIREG_DATA_DIR" in message and "https://" in message


def test_default_data_dir_follows_environment(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv("ANTIREG_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # platformdirs' Linux rule
    assert default_data_dir() == Path(platformdirs.user_data_dir("antireg", appauthor=False))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert default_data_dir() == tmp_path / "xdg" / "antireg"
    monkeypatch.setenv("ANTIREG_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    with pytest.raises(DataError, match=str(tmp_path / AIRFOIL)):
        load_dataset("airfoil")


def test_unknown_dataset_is_a_data_error():
    with pytest.raises(DataError, match="concrete"):
        load_dataset("iris")


def test_corrupt_airfoil_fails_checksum(tmp_path):
    copy_to(tmp_path, AIRFOIL)
    flip_byte(tmp_path / AIRFOIL, 100)
    with pytest.raises(DataError, match=f"{tmp_path / AIRFOIL} failed verification.*sha256"):
        load_dataset("airfoil", tmp_path)


def test_truncated_mnist_fails_checksum_and_parse(tmp_path):
    copy_to(tmp_path, *T10K)
    path = tmp_path / T10K[0]
    path.write_bytes(path.read_bytes()[:50_000])
    with pytest.raises(DataError, match="failed verification"):
        load_dataset("mnist_t10k", tmp_path)
    with pytest.raises(DataError, match="gzip"):
        load_dataset("mnist_t10k", tmp_path, verify=False)


def test_resaved_concrete_passes_by_its_values(tmp_path):
    # Excel rewrites the WRITEACCESS record (user name) on opening; mimic that.
    copy_to(tmp_path, CONCRETE)
    path = tmp_path / CONCRETE
    record = path.read_bytes().find(b"\x5c\x00\x70\x00")  # record type 0x5C, length 112
    assert record > 0
    flip_byte(path, record + 10)
    assert hashlib.sha256(path.read_bytes()).hexdigest() != DATASETS["concrete"].files[0].sha256
    ds = load_dataset("concrete", tmp_path)
    np.testing.assert_array_equal(ds.X, load_dataset("concrete", SHARED).X)


def test_concrete_with_a_changed_value_fails(tmp_path):
    copy_to(tmp_path, CONCRETE)
    path = tmp_path / CONCRETE
    cell = path.read_bytes().find(struct.pack("<d", 79.98611076))  # strength, first row
    assert cell > 0
    flip_byte(path, cell + 3)
    with pytest.raises(DataError, match="do not match the genuine values"):
        load_dataset("concrete", tmp_path)


def test_truncated_concrete_fails(tmp_path):
    copy_to(tmp_path, CONCRETE)
    path = tmp_path / CONCRETE
    path.write_bytes(path.read_bytes()[:60_000])
    with pytest.raises(DataError, match="failed verification"):
        load_dataset("concrete", tmp_path)
    with pytest.raises(DataError, match="Excel"):
        load_dataset("concrete", tmp_path, verify=False)


# ------------------------------------------------------------------------ download


@pytest.fixture
def serve(monkeypatch):
    """Replace the network fetch with a copy of a local file; records the URLs asked for."""
    asked: list[str] = []

    def use(source: Path) -> list[str]:
        def fake_fetch(url: str, dest: Path) -> None:
            asked.append(url)
            shutil.copyfile(source, dest)
        monkeypatch.setattr(files, "fetch", fake_fetch)
        return asked

    return use


def test_download_puts_verified_file_in_place(tmp_path, serve):
    asked = serve(genuine(AIRFOIL) / AIRFOIL)
    ds = load_dataset("airfoil", tmp_path / "data", download=True)
    assert ds.X.shape == (1503, 5)
    assert asked == [DATASETS["airfoil"].files[0].url] and asked[0].startswith("https://")
    assert os.listdir(tmp_path / "data/airfoil") == ["airfoil_self_noise.dat"]
    load_dataset("airfoil", tmp_path / "data", download=True)  # present now: no second fetch
    assert len(asked) == 1


def test_download_with_checksum_mismatch_leaves_nothing(tmp_path, serve):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"800\t0\t0.3048\t71.3\t0.00266337\t126.201\r\n")
    serve(bad)
    with pytest.raises(DataError, match="failed verification"):
        load_dataset("airfoil", tmp_path / "data", download=True)
    assert os.listdir(tmp_path / "data/airfoil") == []


def test_download_refuses_plain_http(tmp_path, serve):
    asked = serve(tmp_path)
    spec = FileSpec("X", "x/file", "http://example.org/file", sha256="0" * 64)
    with pytest.raises(DataError, match="non-HTTPS"):
        download(spec, tmp_path / "x/file")
    assert asked == [] and not (tmp_path / "x/file").exists()
