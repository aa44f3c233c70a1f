"""Saving learned optimizers (:func:`antireg.optimizers.learned.load_lopt` reads them back).

The checkpoint format (one ``torch.save`` file of plain data: a JSON header and the state dict,
so that loading cannot execute code) is described in :mod:`antireg.optimizers.learned`. It is
written through :func:`antireg.experiments.storage.atomic_file`, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from antireg.experiments.storage import atomic_file
# the reader and the architecture are re-exported: their home before they moved beside the optimizer
from antireg.optimizers.learned import FORMAT, VERSION, Arch, CheckpointError, LOptNet, load_lopt, read_header  # noqa: F401


def save_lopt(net: LOptNet, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (atomically) to ``path``; ``info`` (JSON-serialisable) goes into the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, "arch": net.arch.to_dict(), "info": info or {}}
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    with atomic_file(path, "wb") as fh:
        torch.save({"header": json.dumps(header), "state_dict": state}, fh)
    return path
