"""TrainStep: composition, accumulation, resume, mixed precision, schedulers, loss scaling."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from antireg.penalty import ProximityPenalty
from antireg.rules import RULES, SAM, make_rule
from antireg.safeguards import GradClip, TrustRegion
from antireg.step import StepInfo, TrainStep

RULE_PARAMS = {
    "erm": {},
    "gr": {"gamma": 0.3, "mode": "fd_backward", "eps": 0.05},
    "gr_db": {"gamma": 0.3},
    "gr_fd_forward": {"gamma": 0.3, "eps": 0.05},
    "gr_fd_backward": {"gamma": 0.3, "eps": 0.05},
    "igr": {"lr": 0.2},
    "flooding": {"b": 0.5},
    "sam": {"rho": 0.1},
    "asam": {"rho": 0.3, "eta": 0.01},
    "gsam": {"rho": 0.1, "alpha": 0.4},
    "gam": {"rho": 0.1, "alpha": 0.3, "beta": 1.0},
}

gen = torch.Generator().manual_seed(0)
X = torch.randn(32, 3, generator=gen, dtype=torch.float64)
Y = torch.randn(32, 2, generator=gen, dtype=torch.float64)


def mlp(seed: int = 0, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype)


def closure(model, x=X, y=Y):
    return lambda: F.mse_loss(model(x), y, reduction="none").mean(1)


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def test_plain_step_is_a_plain_torch_step():
    a, b = mlp(), mlp()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    step = TrainStep(a, opt_a)
    for _ in range(3):
        info = step(closure(a))
        opt_b.zero_grad()
        F.mse_loss(b(X), Y).backward()
        opt_b.step()
    assert info == StepInfo(info.loss, info.grad_norm, False, False, False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


@pytest.mark.parametrize("name", sorted(RULES))
def test_micro_batches_give_the_full_batch_update(name):
    full, micro = mlp(), mlp()
    steps = [
        TrainStep(m, torch.optim.SGD(m.parameters(), lr=0.1), make_rule(name, **RULE_PARAMS[name]))
        for m in (full, micro)
    ]
    for _ in range(2):
        steps[0](closure(full))
        cuts = [(0, 5), (5, 18), (18, 32)]  # unequal sizes
        steps[1]([closure(micro, X[i:j], Y[i:j]) for i, j in cuts])
    for pf, pm in zip(full.parameters(), micro.parameters()):
        torch.testing.assert_close(pm, pf, rtol=1e-10, atol=1e-12)


class CountingRule:
    """A stateful rule, to check TrainStep saves rule state."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model, batch):
        self.calls += 1
        return SAM(0.1)(model, batch)

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def _ar_step(model, rule):
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    params = list(model.parameters())
    step = TrainStep(
        model,
        opt,
        rule,
        penalty=ProximityPenalty(params, lam=-0.05, center="init"),
        clip=GradClip(params, max_norm=0.3),
        trust_region=TrustRegion(params, factor=0.05),
    )
    return step, sched


def _batches():
    g = torch.Generator().manual_seed(5)
    return [torch.randperm(32, generator=g)[:12] for _ in range(8)]


@pytest.mark.parametrize("make", [lambda: make_rule("gsam", rho=0.1, alpha=0.3, rho_min=0.01), CountingRule])
def test_resume_restores_training_bit_for_bit(make):
    batches = _batches()
    model = mlp(seed=0)
    step, sched = _ar_step(model, make())
    for idx in batches:
        step(closure(model, X[idx], Y[idx]))
        sched.step()

    model = mlp(seed=0)
    step, sched = _ar_step(model, make())
    for idx in batches[:4]:
        step(closure(model, X[idx], Y[idx]))
        sched.step()
    buffer = io.BytesIO()
    torch.save({"step": step.state_dict(), "sched": sched.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    fresh = mlp(seed=1)  # different θ₀: θ_c, θ_ref and R must come from the checkpoint
    resumed, fresh_sched = _ar_step(fresh, make())
    resumed.load_state_dict(saved["step"])
    fresh_sched.load_state_dict(saved["sched"])
    for idx in batches[4:]:
        resumed(closure(fresh, X[idx], Y[idx]))
        fresh_sched.step()

    for a, b in zip(fresh.parameters(), step.model.parameters()):
        assert not torch.equal(a, b)  # the interrupted run stopped halfway
    reference = mlp(seed=0)
    ref_step, ref_sched = _ar_step(reference, make())
    for idx in batches:
        ref_step(closure(reference, X[idx], Y[idx]))
        ref_sched.step()
    for a, b in zip(fresh.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    assert (resumed.clip.steps, resumed.clip.events) == (ref_step.clip.steps, ref_step.clip.events)
    assert (resumed.trust_region.steps, resumed.trust_region.events) == (8, ref_step.trust_region.events)
    assert 0 < ref_step.clip.events and 0 < ref_step.trust_region.events  # both safeguards exercised


@pytest.mark.parametrize("name", sorted(RULES))
def test_bfloat16_autocast_runs_and_stays_finite(name):
    model = mlp(dtype=torch.float32)
    x, y = X.float(), Y.float()
    seen = []

    def bf16_closure():
        out = model(x)
        seen.append(out.dtype)
        return F.mse_loss(out.float(), y, reduction="none").mean(1)

    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.05), make_rule(name, **RULE_PARAMS[name]),
                     autocast=torch.bfloat16)
    for _ in range(3):
        info = step(bf16_closure)
        assert torch.isfinite(torch.tensor(info.loss))
    assert set(seen) == {torch.bfloat16}
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())


def test_scheduler_attached_to_the_optimizer_sets_the_step_size():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    step = TrainStep(model, opt, SAM(0.1))
    for lr in (0.1, 0.05, 0.025):
        before = params_of(model)
        probe = copy.deepcopy(model)
        SAM(0.1)(probe, closure(probe))
        step(closure(model))
        for b, p, q in zip(before, model.parameters(), probe.parameters()):
            torch.testing.assert_close(p.detach(), b - lr * q.grad)
        sched.step()


def test_grad_scaler_scales_once_per_step_and_skips_overflow():
    model, plain = mlp(), mlp()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4, growth_interval=1)
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), SAM(0.1), scaler=scaler)
    plain_step = TrainStep(plain, torch.optim.SGD(plain.parameters(), lr=0.1), SAM(0.1))
    for k in range(1, 4):
        info = step(closure(model))
        plain_step(closure(plain))
        assert not info.skipped
        assert scaler.get_scale() == 2.0 ** (4 + k)  # SAM makes two passes; one update per step
    for p, q in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=0)  # scaling by a power of two is exact

    before = params_of(model)
    info = step(lambda: F.mse_loss(model(X), Y, reduction="none").mean(1) * float("inf"))
    assert info.skipped and scaler.get_scale() == 2.0**6
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_state_dict_holds_the_whole_step():
    model = mlp()
    step, _ = _ar_step(model, SAM(0.1))
    step(closure(model))
    state = step.state_dict()
    assert set(state) == {"model", "optimizer", "penalty", "clip", "trust_region"}
    assert set(state["trust_region"]) == {"ref", "radius", "steps", "events"}
    assert state["clip"]["steps"] == 1


def test_checkpoint_in_the_former_format_resumes_bit_for_bit():
    """A state dict written before the stages saved themselves (each stage's attributes read
    off it by name) loads into a fresh step and resumes to the uninterrupted run; the stages'
    own state_dicts write the same keys."""
    former = {"penalty": ("center",), "clip": ("steps", "events", "last_norm"),
              "trust_region": ("ref", "radius", "steps", "events")}  # fmt: skip
    batches = _batches()
    model = mlp(seed=0)
    step, _ = _ar_step(model, SAM(0.1))
    for idx in batches[:4]:
        step(closure(model, X[idx], Y[idx]))
    old = {"model": step.model.state_dict(), "optimizer": step.optimizer.state_dict()}
    old.update({name: {a: getattr(getattr(step, name), a) for a in attrs} for name, attrs in former.items()})
    assert {k: set(v) for k, v in step.state_dict().items() if k in former} == {k: set(v) for k, v in former.items()}
    buffer = io.BytesIO()
    torch.save(old, buffer)
    buffer.seek(0)

    fresh = mlp(seed=1)
    resumed, _ = _ar_step(fresh, SAM(0.1))
    resumed.load_state_dict(torch.load(buffer))
    for idx in batches[4:]:
        resumed(closure(fresh, X[idx], Y[idx]))
    reference = mlp(seed=0)
    ref_step, _ = _ar_step(reference, SAM(0.1))
    for idx in batches:
        ref_step(closure(reference, X[idx], Y[idx]))
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), reference.parameters()))
    assert (resumed.clip.steps, resumed.clip.events, resumed.clip.last_norm) == (
        ref_step.clip.steps, ref_step.clip.events, ref_step.clip.last_norm)  # fmt: skip
    assert (resumed.trust_region.steps, resumed.trust_region.events) == (8, ref_step.trust_region.events)
    assert all(torch.equal(a, b) for a, b in zip(resumed.penalty.center, ref_step.penalty.center))
    assert 0 < ref_step.clip.events and 0 < ref_step.trust_region.events
