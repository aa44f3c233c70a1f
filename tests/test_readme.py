"""Every python block of the README's "Training-loop recipes" runs as written, so README and code
cannot drift. Each block runs alone in a fresh namespace (as a user would paste it), in a
temporary folder; the DDP block with the environment torchrun would give one process (world size 1)."""

from __future__ import annotations

import re
import socket
import warnings
from pathlib import Path

import pytest
import torch

README = Path(__file__).parents[1] / "README.md"
START, END = "<!-- recipes:", "<!-- /recipes -->"


def recipe_blocks() -> list[str]:
    text = README.read_text()
    assert START in text and END in text, "README.md lost the markers of its training-loop recipes"
    section = text[text.index(START):text.index(END)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


BLOCKS = recipe_blocks()


def test_recipes_cover_every_integration():
    joined = "\n".join(BLOCKS)
    for needle in ["opt.step(closure)", "backward(create_graph=create_graph)", "opt.step(closure, scaler)", "x.chunk(micro)", "DDP(",
                   "configure_optimizers", "accelerator.prepare"]:
        assert needle in joined, needle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_recipe_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "init_process_group" in code:  # only there: accelerate would start a process group of its own
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(free_port()), "GLOO_SOCKET_IFNAME": "lo"}.items():
            monkeypatch.setenv(key, value)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AntiReg's "no spectrum" note, Lightning's "no num_workers"
        exec(compile(code, f"{README.name} (recipes)", "exec"), namespace)
    assert not torch.distributed.is_initialized(), "a recipe left its process group open"
    models = [v for v in namespace.values() if isinstance(v, torch.nn.Module)]
    if "trainer" in namespace:
        models.append(namespace["trainer"].lightning_module)
        assert namespace["trainer"].global_step == 8
    assert models, "a recipe that trains no model"
    for m in models:
        assert all(torch.isfinite(p).all() for p in m.parameters())
