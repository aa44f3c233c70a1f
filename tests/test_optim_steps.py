"""first_step/second_step, AntiReg from a schedule, and AntiReg's exact resume (float64)."""

from __future__ import annotations

import copy

import pytest
import torch

from antireg.optim import ASAM, GAM, GSAM, SAM, AntiReg
from antireg.schedules import power_law

X = torch.randn(32, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
Y = torch.randn(32, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


def _loss(m: torch.nn.Module) -> torch.Tensor:
    return ((m(X) - Y) ** 2).mean()


def _train(opt, m, steps: int) -> None:
    for _ in range(steps):
        def closure():
            opt.zero_grad()
            loss = _loss(m)
            loss.backward()
            return loss
        opt.step(closure)


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("cls, kw", [(SAM, {"rho": 0.1}), (ASAM, {"rho": 0.5}), (GSAM, {"rho": 0.1, "alpha": 0.3})])
def test_first_and_second_step_equal_step_closure(cls, kw):
    m1, m2 = _model(), _model()
    o1 = cls(m1.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, modules=m1, **kw)
    o2 = cls(m2.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, modules=m2, **kw)
    for _ in range(5):
        _train(o1, m1, 1)
        _loss(m2).backward()
        o2.first_step(zero_grad=True)
        _loss(m2).backward()
        o2.second_step(zero_grad=True)
    assert _max_diff(m1, m2) == 0.0
    assert _max_diff(m1, _model()) > 1e-3  # it trained


def test_gam_first_and_second_step_equal_step_closure():
    m1, m2 = _model(), _model()
    o1 = GAM(m1.parameters(), torch.optim.SGD, rho=0.05, alpha=0.3, lr=0.1, momentum=0.9)
    o2 = GAM(m2.parameters(), torch.optim.SGD, rho=0.05, alpha=0.3, lr=0.1, momentum=0.9)

    def closure(create_graph=False):
        o1.zero_grad()
        loss = _loss(m1)
        loss.backward(create_graph=create_graph)
        return loss

    for _ in range(4):
        o1.step(closure)
        _loss(m2).backward(create_graph=True)
        o2.first_step(zero_grad=True)
        _loss(m2).backward(create_graph=True)
        o2.second_step(zero_grad=True)
    assert _max_diff(m1, m2) == 0.0
    assert _max_diff(m1, _model()) > 1e-3


def test_gam_hand_loop_clear_errors():
    m = _model()
    opt = GAM(m.parameters(), torch.optim.SGD, rho=0.05, alpha=0.3, lr=0.1)
    _loss(m).backward()  # no create_graph: no Hessian-vector product to take
    with pytest.raises(ValueError, match="create_graph=True"):
        opt.first_step()
    with_sam = GAM(m.parameters(), torch.optim.SGD, rho=0.05, alpha=0.3, beta=1.0, lr=0.1)
    with pytest.raises(ValueError, match="third pass"):
        with_sam.first_step()


def test_sam_first_step_is_the_papers_ascent():
    """θ + ρ g/‖g‖ after first_step (Foret et al., Eq. 2), from a hand-computed g."""
    m = _model()
    opt = SAM(m.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    theta = [p.detach().clone() for p in m.parameters()]
    g = torch.autograd.grad(_loss(m), list(m.parameters()))
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    _loss(m).backward()
    opt.first_step()
    for p, t, gi in zip(m.parameters(), theta, g):
        torch.testing.assert_close(p.detach(), t + 0.05 * gi / norm, rtol=1e-12, atol=1e-14)


def test_second_step_without_first_step_is_a_clear_error():
    m = _model()
    opt = SAM(m.parameters(), torch.optim.SGD, lr=0.1)
    _loss(m).backward()
    with pytest.raises(RuntimeError, match="first_step"):
        opt.second_step()


@pytest.mark.filterwarnings("ignore:AntiReg. no spectrum")
def test_antireg_from_a_schedule_and_n():
    m = _model()
    opt = AntiReg(m.parameters(), torch.optim.SGD, schedule=power_law(-0.02, 1.0, 16), n=64, lr=0.1, radius=10.0)
    assert opt.lam == pytest.approx(-0.02 * 16 / 64)
    with pytest.raises(ValueError, match="exactly one of lam"):
        AntiReg(m.parameters(), torch.optim.SGD, lam=-0.01, schedule=power_law(-0.02, 1.0, 16), n=64, lr=0.1)
    with pytest.raises(ValueError, match="exactly one of lam"):
        AntiReg(m.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="needs n"):
        AntiReg(m.parameters(), torch.optim.SGD, schedule=power_law(-0.02, 1.0, 16), lr=0.1)


def _antireg(m):
    return AntiReg(m.parameters(), torch.optim.Adam, lam=-0.05, max_norm=0.3, radius_factor=0.2, lr=0.02, eigs=None)


@pytest.mark.filterwarnings("ignore:AntiReg. no spectrum")
def test_antireg_resumes_bit_identically_and_needs_its_own_state():
    m = _model()
    opt = _antireg(m)
    _train(opt, m, 12)
    saved, weights = copy.deepcopy(opt.state_dict()), copy.deepcopy(m.state_dict())
    _train(opt, m, 12)
    assert 0 < opt.r_clip < 1 or 0 < opt.r_proj < 1  # the safeguards acted, but not on every step

    resumed = _model()
    resumed.load_state_dict(weights)
    opt2 = _antireg(resumed)  # its θ₀ is the resumed weights until the state is loaded
    opt2.load_state_dict(saved)
    _train(opt2, resumed, 12)
    assert _max_diff(m, resumed) == 0.0
    assert (opt2.r_clip, opt2.r_proj) == (opt.r_clip, opt.r_proj)

    # negative control: the base optimizer's state alone does not resume AR
    naive = _model()
    naive.load_state_dict(weights)
    opt3 = _antireg(naive)
    opt3.base_optimizer.load_state_dict({k: v for k, v in saved.items() if k != "antireg"})
    _train(opt3, naive, 12)
    assert _max_diff(m, naive) > 1e-8
