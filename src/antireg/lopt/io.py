"""Saving and loading learned optimizers, without executing code on load.

A checkpoint is one ``torch.save`` file holding plain data only: a JSON header
(format, version, architecture, free-form training info) and the network's state
dict. It is read with ``torch.load(weights_only=True)``, which refuses anything
but tensors and primitive containers, so a checkpoint cannot run code. And it is
checked before anything is allocated, since ``weights_only`` stops code, not memory:
the archive's uncompressed size (a small file may inflate to gigabytes) and the
architecture's size (a small header may ask for a huge network) are bounded.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import torch

from antireg.experiments.config import ConfigError
from antireg.experiments.storage import atomic_file
from antireg.lopt.optimizer import Arch, LOptNet

FORMAT = "antireg.lopt"
VERSION = 1
MAX_BYTES = 64 << 20  # uncompressed size of a checkpoint archive: a learned optimizer is a few KiB
MAX_ENTRIES = 1000
MAX_HIDDEN = 1024


class CheckpointError(ConfigError):
    """A checkpoint that is missing, not a learned optimizer, or not the expected architecture
    (a ConfigError: the fix is to name the right file)."""


def save_lopt(net: LOptNet, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (atomically) to ``path``; ``info`` (JSON-serialisable) goes into the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, "arch": net.arch.to_dict(), "info": info or {}}
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    with atomic_file(path, "wb") as fh:
        torch.save({"header": json.dumps(header), "state_dict": state}, fh)
    return path


def _check_archive(path: Path) -> None:
    """A torch zip archive whose entries, uncompressed, stay within the bounds."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a learned-optimizer checkpoint (not a torch archive: {exc})") from None
    size = sum(i.file_size for i in infos)
    if len(infos) > MAX_ENTRIES or size > MAX_BYTES:
        raise CheckpointError(f"{path} holds {len(infos)} entries of {size / 2**20:.3g} MiB uncompressed, more than "
                              f"a learned optimizer ({MAX_ENTRIES} entries, {MAX_BYTES >> 20} MiB); refusing to load it")


def _arch(path: Path, fields: Any) -> Arch:
    """The header's architecture, checked against the bounds before any network is built."""
    try:
        arch = Arch(**fields)
    except TypeError as exc:
        raise CheckpointError(f"{path}: unreadable architecture {fields!r} ({exc})") from None
    ok = (arch.kind in ("lstm", "mlp") and isinstance(arch.hidden, int) and not isinstance(arch.hidden, bool)
          and 1 <= arch.hidden <= MAX_HIDDEN and isinstance(arch.step_size, (int, float))
          and math.isfinite(arch.step_size) and arch.step_size > 0)  # fmt: skip
    if not ok:
        raise CheckpointError(f"{path}: architecture {fields!r} out of bounds (kind lstm or mlp, "
                              f"1 <= hidden <= {MAX_HIDDEN}, a finite step_size > 0)")
    return arch


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise CheckpointError(f"learned-optimizer checkpoint {path} not found")
    _check_archive(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        header = json.loads(blob["header"])
        state = blob["state_dict"]
    except Exception as exc:  # any unreadable file: torch, pickle, JSON or layout errors alike
        raise CheckpointError(f"{path} is not a learned-optimizer checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a learned-optimizer checkpoint (no header and state dict)")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a {FORMAT} v{VERSION} checkpoint (header: {header.get('format')!r} "
                              f"v{header.get('version')!r})")  # fmt: skip
    return header, state


def read_header(path: str | Path) -> dict[str, Any]:
    """The checkpoint's header: format, version, arch, info."""
    return _read(Path(path))[0]


def load_lopt(path: str | Path, arch: Arch | None = None) -> LOptNet:
    """The learned optimizer saved at ``path``.

    ``arch``: the architecture the caller expects; a checkpoint of another one is
    refused with both named. Without it, the header's architecture is built.
    """
    path = Path(path)
    header, state = _read(path)
    saved = _arch(path, header.get("arch"))
    if arch is not None and arch != saved:
        raise CheckpointError(f"{path} holds a learned optimizer with architecture {saved}, not the expected {arch}")
    net = LOptNet(saved)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit architecture {saved}: {exc}") from None
    return net
