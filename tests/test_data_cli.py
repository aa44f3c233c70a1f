"""`antireg data list` / `antireg data fetch`, and pooch downloads from a real HTTPS server on loopback.

The server uses a self-signed certificate made here with openssl, trusted through
REQUESTS_CA_BUNDLE (requests, under pooch, honours it), so the code path is the one
used online: TLS, streaming, checksum, atomic rename.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import os
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

import antireg.data.tabular as tabular
from antireg.cli import main
from antireg.data import DataError
from antireg.data.files import download

from test_data_files import AIRFOIL, CONCRETE, copy_to, genuine


@pytest.fixture(scope="module")
def https_root(tmp_path_factory):
    """(folder served, base URL) of an HTTPS server on 127.0.0.1 with a trusted self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the loopback server's certificate")
    tmp = tmp_path_factory.mktemp("https")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    root = tmp / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    old = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
    yield root, f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    if old is None:
        os.environ.pop("REQUESTS_CA_BUNDLE")
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = old


@pytest.fixture
def airfoil_served(https_root, monkeypatch):
    """Serve the genuine Airfoil file and a corrupted copy; the loader's spec points at the genuine one."""
    root, base = https_root
    src = genuine(AIRFOIL) / AIRFOIL
    shutil.copyfile(src, root / "airfoil.dat")
    raw = bytearray(src.read_bytes())
    raw[100] ^= 0x01  # one flipped bit
    (root / "corrupt.dat").write_bytes(bytes(raw))
    spec = dataclasses.replace(tabular.AIRFOIL, url=f"{base}/airfoil.dat")
    monkeypatch.setattr(tabular, "AIRFOIL", spec)
    return spec, base


def test_download_over_https_verifies_and_places_the_file(tmp_path, airfoil_served):
    spec, _ = airfoil_served
    dest = tmp_path / spec.relpath
    download(spec, dest)
    assert dest.read_bytes() == (genuine(AIRFOIL) / AIRFOIL).read_bytes()
    assert os.listdir(dest.parent) == [dest.name]  # no temporary file left


def test_corrupted_download_is_refused_and_leaves_nothing(tmp_path, airfoil_served):
    spec, base = airfoil_served
    dest = tmp_path / spec.relpath
    with pytest.raises(DataError, match="failed verification.*Nothing was saved"):
        download(dataclasses.replace(spec, url=f"{base}/corrupt.dat"), dest)
    assert os.listdir(dest.parent) == []


def test_missing_remote_file_is_a_clear_error(tmp_path, airfoil_served):
    spec, base = airfoil_served
    with pytest.raises(DataError, match="could not download Airfoil.*404.*offline"):
        download(dataclasses.replace(spec, url=f"{base}/nope.dat"), tmp_path / spec.relpath)
    assert os.listdir(tmp_path / "airfoil") == []


def test_cli_fetch_then_list(tmp_path, airfoil_served, capsys):
    data = tmp_path / "data"
    assert main(["data", "fetch", "airfoil", "--data-dir", str(data)]) == 0
    assert "airfoil: ready" in capsys.readouterr().out
    assert (data / AIRFOIL).read_bytes() == (genuine(AIRFOIL) / AIRFOIL).read_bytes()
    assert main(["data", "list", "--data-dir", str(data)]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert "present" in lines["airfoil"] and "missing 1/1" in lines["concrete"]
    assert "built in" in lines["diabetes"]


def test_cli_list_reports_a_corrupt_file(tmp_path, capsys):
    data = copy_to(tmp_path, CONCRETE, AIRFOIL)
    with open(data / AIRFOIL, "ab") as f:
        f.write(b"1 2 3 4 5 6\n")
    assert main(["data", "list", "--data-dir", str(data)]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert "corrupt 1/1" in lines["airfoil"] and "present" in lines["concrete"]


def test_cli_fetch_unknown_name_exits_2(tmp_path, capsys):
    assert main(["data", "fetch", "iris", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown data set(s) iris" in err and "antireg data list" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())
