"""The learned optimizer: a small network applied to every coordinate of θ.

Coordinate-wise, as in Andrychowicz et al. (2016, *Learning to learn by gradient
descent by gradient descent*) and Sahoo & Krishnan (2025, arXiv:2510.08968): one
network with weights φ is shared by all coordinates, so it trains any model size.
Per coordinate θᵢ with gradient gᵢ at step t = 1, 2, …:

    m_β ← β·m_β + (1 − β)·g        for β ∈ BETAS          (momenta, three time scales)
    v   ← β₂·v + (1 − β₂)·g²                               (second moment)
    x   = [ n(g), n(m_β), m̂_β/(√v̂ + ε), n(θ), tanh(t/τ) ]   for τ ∈ TIMESCALES
    h   = LSTMCell(x, h)   or   h = MLP(x)                 (the two variants)
    (d, s) = W h + b
    Δθ  = −η · d · exp(s)

m̂, v̂ are Adam's bias-corrected moments. n(·) divides a feature by its root mean
square over the tensor (Metz et al. 2022, *Practical tradeoffs between memory,
compute and performance in learned optimizers*), so the inputs have unit scale on
any task; m̂/√v̂ is already scale-free. The update is a direction d times a
magnitude exp(s) (Metz et al.), scaled by a fixed η.

:class:`LOptNet` is that map, written on explicit tensors so meta-training can
differentiate through it; :class:`LearnedOptimizer` runs it as a
``torch.optim.Optimizer`` in any training loop. :func:`load_lopt` reads a checkpoint
(``antireg lopt train`` writes them: :func:`antireg.lopt.io.save_lopt`) without executing
code: it is one ``torch.save`` file of plain data, a JSON header (format, version,
architecture, training info) and the net's state dict, read with
``torch.load(weights_only=True)``; and it is checked before anything is allocated, since
``weights_only`` stops code, not memory: the archive's uncompressed size (a small file may
inflate to gigabytes) and the architecture's size (a small header may ask for a huge
network) are bounded.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import torch
from torch import nn

from antireg.errors import ConfigError

BETAS = (0.5, 0.9, 0.99)
BETA2 = 0.999
TIMESCALES = (10.0, 100.0, 1000.0)
EPS = 1e-8
N_FEATURES = 1 + 2 * len(BETAS) + 1 + len(TIMESCALES)

State = dict[str, torch.Tensor]

FORMAT = "antireg.lopt"
VERSION = 1
MAX_BYTES = 64 << 20  # uncompressed size of a checkpoint archive: a learned optimizer is a few KiB
MAX_ENTRIES = 1000
MAX_HIDDEN = 1024


class CheckpointError(ConfigError):
    """A checkpoint that is missing, not a learned optimizer, or not the expected architecture
    (a ConfigError: the fix is to name the right file)."""


@dataclass(frozen=True)
class Arch:
    """What a checkpoint must match: the variant, its hidden width and the step scale η."""

    kind: Literal["lstm", "mlp"] = "lstm"
    hidden: int = 20
    step_size: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _betas(p: torch.Tensor) -> torch.Tensor:
    """BETAS shaped to broadcast against the stacked momenta (len(BETAS), *p.shape)."""
    return torch.tensor(BETAS, dtype=p.dtype, device=p.device).view(-1, *[1] * p.ndim)


def _rms_normalised(x: torch.Tensor) -> torch.Tensor:
    """n(x) = x / √(mean(x²) + ε), the mean over the whole tensor."""
    return x * torch.rsqrt(x.square().mean() + EPS)


def features(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The (numel, N_FEATURES) inputs for one tensor; ``m`` stacks the momenta (len(BETAS), *p.shape)."""
    m_hat = m / (1 - _betas(p) ** t)
    v_hat = v / (1 - BETA2**t)
    adam = m_hat / (v_hat.sqrt() + EPS)
    time = torch.tanh(t / torch.tensor(TIMESCALES, dtype=p.dtype, device=p.device)).expand(p.numel(), -1)
    columns = [_rms_normalised(g), *map(_rms_normalised, m), *adam, _rms_normalised(p)]
    return torch.cat([torch.stack([c.reshape(-1) for c in columns], 1), time], 1)


class LOptNet(nn.Module):
    """φ: per-coordinate features → the update Δθ (the module docstring has the formula)."""

    def __init__(self, arch: Arch = Arch()) -> None:
        super().__init__()
        if arch.kind not in ("lstm", "mlp") or arch.hidden < 1 or not arch.step_size > 0:
            raise ValueError(f"invalid learned-optimizer architecture {arch}")
        self.arch = arch
        h = arch.hidden
        self.core = (
            nn.LSTMCell(N_FEATURES, h)
            if arch.kind == "lstm"
            else nn.Sequential(nn.Linear(N_FEATURES, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        )
        self.head = nn.Linear(h, 2)
        with torch.no_grad():  # small first steps: d ≈ 0, exp(s) ≈ 1
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    def init_state(self, p: torch.Tensor) -> State:
        """Zero momenta and (for the LSTM) zero hidden state for a tensor like ``p``."""
        z = torch.zeros_like(p)
        state = {"step": torch.zeros((), dtype=p.dtype, device=p.device), "m": torch.stack([z] * len(BETAS)), "v": z}
        if self.arch.kind == "lstm":
            state["h"] = state["c"] = p.new_zeros(p.numel(), self.arch.hidden)
        return state

    def forward(self, p: torch.Tensor, g: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """(Δθ, new state) for one tensor ``p`` with gradient ``g``; pure, so differentiable in φ, p and g."""
        betas = _betas(p)
        t = state["step"] + 1
        m = betas * state["m"] + (1 - betas) * g
        v = BETA2 * state["v"] + (1 - BETA2) * g.square()
        x = features(p, g, m, v, t)
        new = {"step": t, "m": m, "v": v}
        if self.arch.kind == "lstm":
            new["h"], new["c"] = self.core(x, (state["h"], state["c"]))
            hidden = new["h"]
        else:
            hidden = self.core(x)
        d, s = self.head(hidden).unbind(1)
        return (-self.arch.step_size * d * torch.exp(s)).view_as(p), new


class LearnedOptimizer(torch.optim.Optimizer):
    """A meta-trained :class:`LOptNet` as a ``torch.optim.Optimizer``: θ ← θ + Δθ.

    >>> opt = LearnedOptimizer(model.parameters(), load_lopt("lopt_sam.pt"))
    >>> loss.backward(); opt.step(); opt.zero_grad()

    The net's weights are fixed here; its per-parameter state (momenta, LSTM
    state) is the optimizer state, saved by ``state_dict()``. A group's ``lr`` is the
    step scale η of Δθ = −η·d·exp(s), the net's own ``arch.step_size`` by default, so
    that learning-rate schedulers and rules that follow the learning rate see one.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], net: LOptNet) -> None:
        super().__init__(params, defaults={"lr": net.arch.step_size})
        self.net = net

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(self.net.init_state(p))
                delta, new = self.net(p, p.grad, state)
                state.update(new)
                p.add_(delta, alpha=group["lr"] / self.net.arch.step_size)  # alpha 1.0 (exact) at the default
        return loss


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
