"""Saving and loading learned optimizers, without executing code on load.

A checkpoint is one ``torch.save`` file holding plain data only: a JSON header
(format, version, architecture, free-form training info) and the network's state
dict. It is read with ``torch.load(weights_only=True)``, which refuses anything
but tensors and primitive containers, so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from antireg.experiments.config import ConfigError
from antireg.lopt.optimizer import Arch, LOptNet

FORMAT = "antireg.lopt"
VERSION = 1


class CheckpointError(ConfigError):
    """A checkpoint that is missing, not a learned optimizer, or not the expected architecture
    (a ConfigError: the fix is to name the right file)."""


def save_lopt(net: LOptNet, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (atomically) to ``path``; ``info`` (JSON-serialisable) goes into the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, "arch": net.arch.to_dict(), "info": info or {}}
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        torch.save({"header": json.dumps(header), "state_dict": state}, fh)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise CheckpointError(f"learned-optimizer checkpoint {path} not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        header = json.loads(blob["header"])
        state = blob["state_dict"]
    except Exception as exc:  # any unreadable file: torch, pickle, JSON or layout errors alike
        raise CheckpointError(f"{path} is not a learned-optimizer checkpoint ({type(exc).__name__}: {exc})") from None
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
    try:
        saved = Arch(**header["arch"])
    except TypeError as exc:
        raise CheckpointError(f"{path}: unreadable architecture {header['arch']!r} ({exc})") from None
    if arch is not None and arch != saved:
        raise CheckpointError(f"{path} holds a learned optimizer with architecture {saved}, not the expected {arch}")
    net = LOptNet(saved)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit architecture {saved}: {exc}") from None
    return net
