"""antireg.optim: the rules as torch.optim optimizers, against TrainStep and hand-computed updates (float64)."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from antireg import optim as aopt
from antireg import rules
from antireg.losses import flood
from antireg.step import TrainStep

gen = torch.Generator().manual_seed(0)
X = torch.randn(32, 3, generator=gen, dtype=torch.float64)
Y = torch.randn(32, 2, generator=gen, dtype=torch.float64)


def mlp(seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(3, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.Tanh(), nn.Linear(8, 2)]
    return nn.Sequential(*layers).double()


def torch_closure(model, opt):
    def closure(create_graph=False):  # the contract of the rules that need double backprop
        opt.zero_grad()
        loss = F.mse_loss(model(X), Y)
        loss.backward(create_graph=create_graph)
        return loss
    return closure


def per_example(model):
    return lambda: ((model(X) - Y) ** 2).mean(dim=1)


CASES = [
    (aopt.SAM, {"rho": 0.1}, rules.SAM(0.1)),
    (aopt.ASAM, {"rho": 0.3, "eta": 0.01}, rules.ASAM(0.3, 0.01)),
    (aopt.GSAM, {"rho": 0.1, "alpha": 0.4}, rules.GSAM(0.1, 0.4)),
    (aopt.GradNorm, {"gamma": 0.3, "mode": "fd_forward", "eps": 0.05}, rules.GradientNorm(0.3, "fd_forward", 0.05)),
    (aopt.GradNorm, {"gamma": 0.3, "mode": "fd_backward", "eps": 0.05}, rules.GradientNorm(0.3, "fd_backward", 0.05)),
    (aopt.IGR, {"h": 0.2, "eps": 0.05}, rules.IGR(0.2, "fd_forward", 0.05)),
    (aopt.GradNorm, {"gamma": 0.3, "mode": "db"}, rules.GradientNorm(0.3, "db")),
    (aopt.IGR, {"h": 0.2, "mode": "db"}, rules.IGR(0.2, "db")),
    (aopt.GAM, {"rho": 0.05, "alpha": 0.3}, rules.GAM(0.05, 0.3)),
    (aopt.GAM, {"rho": 0.05, "alpha": 0.3, "rho_sam": 0.1, "beta": 1.0}, rules.GAM(0.05, 0.3, 0.1, 1.0)),
]


@pytest.mark.parametrize("cls,kw,rule", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_wrapper_equals_trainstep(cls, kw, rule):
    a, b = mlp(), mlp()
    opt = cls(a.parameters(), torch.optim.SGD, modules=a, lr=0.1, momentum=0.9, **kw)
    ts = TrainStep(b, torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9), rule)
    for _ in range(3):
        la = opt.step(torch_closure(a, opt))
        lb = ts(per_example(b)).loss
        assert float(la) == pytest.approx(lb, rel=1e-12)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-12)


def test_sam_hand_computed_update():
    model, ref = mlp(), mlp()
    opt = aopt.SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    calls = []
    c = torch_closure(model, opt)
    opt.step(lambda: calls.append(1) or c())
    assert len(calls) == 2  # g at θ, then at θ + ε̂
    p = list(ref.parameters())
    g = torch.autograd.grad(F.mse_loss(ref(X), Y), p)
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    with torch.no_grad():
        for pi, gi in zip(p, g):
            pi.add_(0.05 * gi / norm)
    gp = torch.autograd.grad(F.mse_loss(ref(X), Y), p)
    with torch.no_grad():
        for pi, gi, gpi in zip(p, g, gp):
            pi.sub_(0.05 * gi / norm + 0.1 * gpi)
    for pa, pb in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, kw, kept", [("SAM", {"rho": 0.05}, False), ("ASAM", {"rho": 0.5}, False),
                                             ("GSAM", {"rho": 0.05, "alpha": 0.3}, True)])
def test_first_gradient_is_dropped_before_the_second_pass_unless_combine_reads_it(name, kw, kept):
    """SAM and ASAM step along gᵖ alone, so g is freed before the second pass (whose gradients
    can take its memory); GSAM's g⊥ needs g, so it lives on. Checked by weak references."""
    import weakref

    model = mlp()
    opt = getattr(aopt, name)(model.parameters(), torch.optim.SGD, modules=model, lr=0.1, **kw)
    seen, alive = [], []
    inner = torch_closure(model, opt)

    def closure():
        if seen:  # the second pass: are the first pass's gradients still referenced?
            alive.append(any(r() is not None for r in seen))
        loss = inner()
        if not seen:
            seen.extend(weakref.ref(p.grad) for p in model.parameters())
        return loss

    opt.step(closure)
    assert alive == [kept]


def test_gradnorm_fd_close_to_double_backprop():
    model, ref = mlp(), mlp()
    opt = aopt.GradNorm(model.parameters(), torch.optim.SGD, gamma=0.3, eps=1e-6, lr=1.0)
    opt.step(torch_closure(model, opt))
    p = list(ref.parameters())
    g = torch.autograd.grad(F.mse_loss(ref(X), Y), p, create_graph=True)
    full = torch.autograd.grad(F.mse_loss(ref(X), Y) + 0.15 * sum((gi**2).sum() for gi in g), p)
    for pa, pb, gf in zip(model.parameters(), p, full):
        torch.testing.assert_close(pa, pb.detach() - gf, rtol=1e-5, atol=1e-6)


def _grad_norm(model):
    """‖∇L(θ)‖ as a differentiable function of θ (the oracle's double backprop)."""
    g = torch.autograd.grad(F.mse_loss(model(X), Y), list(model.parameters()), create_graph=True)
    return torch.sqrt(sum((gi**2).sum() for gi in g))


def _shift(model, direction, size):
    """θ ← θ + size·d/‖d‖."""
    norm = torch.sqrt(sum((d**2).sum() for d in direction))
    with torch.no_grad():
        for p, d in zip(model.parameters(), direction):
            p.add_(size * d / norm)


@pytest.mark.parametrize("cls,kw", [(aopt.GradNorm, {"gamma": 0.3, "mode": "db"}), (aopt.IGR, {"h": 0.6, "mode": "db"})])
def test_gradnorm_db_equals_double_backprop_oracle(cls, kw):
    """θ − lr·∇(L + (γ/2)‖∇L‖²), the whole objective differentiated by autograd (IGR: γ = h/2)."""
    model, ref = mlp(), mlp()
    opt = cls(model.parameters(), torch.optim.SGD, lr=0.7, **kw)
    calls = []
    c = torch_closure(model, opt)
    opt.step(lambda create_graph=False: calls.append(create_graph) or c(create_graph))
    assert calls == [True]  # one double-backward pass
    p = list(ref.parameters())
    full = torch.autograd.grad(F.mse_loss(ref(X), Y) + 0.15 * _grad_norm(ref) ** 2, p)
    for pa, pb, gf in zip(model.parameters(), p, full):
        torch.testing.assert_close(pa, pb.detach() - 0.7 * gf, rtol=1e-12, atol=1e-13)
        assert pa.grad.grad_fn is None and not pa.grad.requires_grad  # no graph (nor cycle) left behind


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gam_hand_computed_update(beta):
    """GAM's Algorithm 1 from the definitions: f = ∇‖∇L‖(θ), θᵃᵈᵛ = θ + ρ f/‖f‖,
    update g + αρ ∇‖∇L‖(θᵃᵈᵛ) + β(∇L(θ + ρ₀ g/‖g‖) − g), each by autograd of ‖∇L‖ itself."""
    rho, alpha, rho_sam, lr = 0.05, 0.3, 0.1, 0.2
    model, ref = mlp(), mlp()
    opt = aopt.GAM(model.parameters(), torch.optim.SGD, rho=rho, alpha=alpha, rho_sam=rho_sam, beta=beta, lr=lr)
    calls = []
    c = torch_closure(model, opt)
    opt.step(lambda create_graph=False: calls.append(create_graph) or c(create_graph))
    assert calls == [True, True] + ([False] if beta else [])
    p = list(ref.parameters())
    theta = [pi.detach().clone() for pi in p]
    g = torch.autograd.grad(F.mse_loss(ref(X), Y), p)
    _shift(ref, torch.autograd.grad(_grad_norm(ref), p), rho)
    r1 = torch.autograd.grad(_grad_norm(ref), p)
    with torch.no_grad():
        for pi, t in zip(p, theta):
            pi.copy_(t)
    _shift(ref, g, rho_sam)
    g_sam = torch.autograd.grad(F.mse_loss(ref(X), Y), p)
    for pa, t, gi, ri, gs in zip(model.parameters(), theta, g, r1, g_sam):
        update = gi + alpha * rho * ri + beta * (gs - gi)
        torch.testing.assert_close(pa.detach(), t - lr * update, rtol=1e-12, atol=1e-13)


def test_double_backprop_closure_contract_and_loss_scale():
    """A closure without create_graph: a clear error before any pass. With a GradScaler's power-of-two
    scale (float64, no overflow) the update equals the unscaled one; no reference-cycle warning escapes."""
    model = mlp()
    opt = aopt.GAM(model.parameters(), torch.optim.SGD, rho=0.05, alpha=0.3, lr=0.1)
    calls = []

    def plain():
        calls.append(1)
        opt.zero_grad()
        loss = F.mse_loss(model(X), Y)
        loss.backward()
        return loss

    with pytest.raises(ValueError, match=r"def closure\(create_graph=False\)"):
        opt.step(plain)
    assert calls == []
    a, b = mlp(), mlp()
    oa = aopt.GAM(a.parameters(), torch.optim.SGD, rho=0.05, alpha=0.3, lr=0.1, momentum=0.9)
    ob = aopt.GAM(b.parameters(), torch.optim.SGD, rho=0.05, alpha=0.3, lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)

    def scaled(create_graph=False):
        ob.zero_grad()
        loss = scaler.scale(F.mse_loss(b(X), Y))
        loss.backward(create_graph=create_graph)
        return loss

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            la = oa.step(torch_closure(a, oa))
            lb = ob.step(scaled, scaler)
            assert float(la) == float(lb)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-14, atol=0)


def test_scheduler_attaches_and_gsam_rho_follows_lr():
    model = mlp()
    opt = aopt.GSAM(model.parameters(), torch.optim.SGD, rho=0.1, rho_min=0.01, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    assert opt.rule.current_rho() == pytest.approx(0.1)
    opt.step(torch_closure(model, opt))
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.rule.current_rho() == pytest.approx(0.01 + 0.09 * 0.5)


@pytest.mark.parametrize("cls,kw", [(aopt.SAM, {"rho": 0.1}), (aopt.GAM, {"rho": 0.05, "alpha": 0.3}),
                                    (aopt.GradNorm, {"gamma": 0.3, "mode": "db"})], ids=["sam", "gam", "gr_db"])
def test_state_dict_round_trip_bit_identical(cls, kw):
    a = mlp()
    opt = cls(a.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, **kw)
    opt.step(torch_closure(a, opt))
    saved_model, saved_opt = copy.deepcopy(a.state_dict()), copy.deepcopy(opt.state_dict())
    opt.step(torch_closure(a, opt))
    b = mlp(seed=5)
    b.load_state_dict(saved_model)
    opt_b = cls(b.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, **kw)
    opt_b.load_state_dict(saved_opt)
    opt_b.step(torch_closure(b, opt_b))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("cls,kw,rule", [CASES[0], CASES[-2]], ids=["sam", "gam"])
def test_scheduler_on_the_wrapper_equals_scheduler_on_trainstep(cls, kw, rule):
    a, b = mlp(), mlp()
    opt = cls(a.parameters(), torch.optim.SGD, lr=0.2, momentum=0.9, **kw)
    base = torch.optim.SGD(b.parameters(), lr=0.2, momentum=0.9)
    ts = TrainStep(b, base, rule)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5) for o in (opt, base)]
    for _ in range(3):
        opt.step(torch_closure(a, opt))
        ts(per_example(b))
        for s in scheds:
            s.step()
    assert opt.param_groups[0]["lr"] == base.param_groups[0]["lr"] == 0.2 * 0.5**3
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-12)


def test_gradients_in_a_reused_flat_buffer_are_copied():
    """A closure that leaves p.grad as views of one gradient buffer it rewrites on every pass
    (as flat-buffer training code does): the wrapper must not keep those views as g."""
    a, b = mlp(), mlp()
    oa = aopt.GSAM(a.parameters(), torch.optim.SGD, rho=0.1, alpha=0.4, lr=0.1)
    ob = aopt.GSAM(b.parameters(), torch.optim.SGD, rho=0.1, alpha=0.4, lr=0.1)
    flat = torch.zeros(sum(p.numel() for p in a.parameters()), dtype=torch.float64)

    def into_buffer():
        loss = torch_closure(a, oa)()
        offset = 0
        for p in a.parameters():
            view = flat[offset:offset + p.numel()].view_as(p)
            view.copy_(p.grad)
            p.grad, offset = view, offset + p.numel()
        return loss

    for _ in range(2):
        oa.step(into_buffer)
        ob.step(torch_closure(b, ob))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_batchnorm_stats_updated_once():
    model, ref = mlp(bn=True), mlp(bn=True)
    opt = aopt.SAM(model.parameters(), torch.optim.SGD, modules=model, rho=0.1, lr=0.1)
    opt.step(torch_closure(model, opt))
    ref(X)  # one plain forward pass
    torch.testing.assert_close(model[1].running_mean, ref[1].running_mean, rtol=0, atol=0)
    torch.testing.assert_close(model[1].running_var, ref[1].running_var, rtol=0, atol=0)
    assert int(model[1].num_batches_tracked) == 1


def test_clear_errors():
    model = mlp()
    with pytest.raises(ValueError, match="modules=model"):
        aopt.ASAM(model.parameters(), torch.optim.SGD, lr=0.1)
    opt = aopt.SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match="flood level"):
        flood(torch.tensor(1.0), -1)


@pytest.mark.parametrize("loss0", [0.2, 0.8])
def test_flood_gradient_sign(loss0):
    w = torch.tensor(loss0, dtype=torch.float64, requires_grad=True)
    flood(w * 1.0, 0.5).backward()
    assert float(w.grad) == (1.0 if loss0 > 0.5 else -1.0)
    assert float(flood(torch.tensor(loss0), 0.5)) == pytest.approx(abs(loss0 - 0.5) + 0.5)


def test_antireg_equals_trainstep_and_hand_computed():
    from antireg.penalty import ProximityPenalty
    from antireg.safeguards import GradClip, TrustRegion

    a, b, ref = mlp(), mlp(), mlp()
    kw = dict(lam=-0.05, max_norm=0.3, radius=0.05, center="init")
    with pytest.warns(UserWarning, match="trust region is the safeguard"):
        aopt.AntiReg._warned = False
        opt = aopt.AntiReg(a.parameters(), torch.optim.SGD, lr=0.5, **kw)
    pb = list(b.parameters())
    ts = TrainStep(b, torch.optim.SGD(pb, lr=0.5), None, ProximityPenalty(pb, -0.05, "init"),
                   GradClip(pb, 0.3), TrustRegion(pb, 0.05))
    for _ in range(4):
        opt.step(torch_closure(a, opt))
        ts(per_example(b))
    for pa, pbb in zip(a.parameters(), pb):
        torch.testing.assert_close(pa, pbb, rtol=1e-12, atol=1e-12)
    assert opt.r_clip == ts.clip.rate and opt.r_proj == ts.trust_region.rate and opt.r_proj > 0
    assert opt.lam == -0.05
    # one step by hand: g + λ(θ − θ₀) = g at θ₀, clipped, SGD, projected
    p = list(ref.parameters())
    g = torch.autograd.grad(F.mse_loss(ref(X), Y), p)
    norm = float(torch.sqrt(sum((gi**2).sum() for gi in g)))
    c = min(1.0, 0.3 / (norm + 1e-12))
    new = [pi.detach() - 0.5 * c * gi for pi, gi in zip(p, g)]
    d = float(torch.sqrt(sum(((n_ - pi.detach()) ** 2).sum() for n_, pi in zip(new, p))))
    new = [pi.detach() + (n_ - pi.detach()) * min(1.0, 0.05 / d) for n_, pi in zip(new, p)]
    c2 = mlp()
    o2 = aopt.AntiReg(c2.parameters(), torch.optim.SGD, lr=0.5, **kw)
    o2.step(torch_closure(c2, o2))
    for pa, n_ in zip(c2.parameters(), new):
        torch.testing.assert_close(pa, n_, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:AntiReg. no spectrum")
def test_antireg_zero_center_steps_along_g_plus_lambda_theta():
    """center="zero" (SPEC §1's default θ_c = 0): two SGD steps by hand, θ ← θ − lr·(∇L + λθ),
    each clipped; θ₀ kept only by the trust region, and not at all without one."""
    model, ref = mlp(), mlp()
    aopt.AntiReg._warned = False
    with pytest.warns(UserWarning, match="no trust region .* nothing bounds the negative penalty"):
        opt = aopt.AntiReg(model.parameters(), torch.optim.SGD, lam=-0.05, max_norm=0.3, radius_factor=None, lr=0.5)
    assert opt.penalty.center is None and opt.trust_region is None  # nothing of θ₀ is kept
    p = [q.detach().clone().requires_grad_() for q in ref.parameters()]
    for _ in range(2):
        opt.step(torch_closure(model, opt))
        out = torch.func.functional_call(ref, dict(zip([n for n, _ in ref.named_parameters()], p)), (X,))
        g = [gi - 0.05 * pi.detach() for gi, pi in zip(torch.autograd.grad(F.mse_loss(out, Y), p), p)]
        norm = float(torch.sqrt(sum((gi**2).sum() for gi in g)))
        c = min(1.0, 0.3 / (norm + 1e-12))
        p = [(pi.detach() - 0.5 * c * gi).requires_grad_() for pi, gi in zip(p, g)]
    for pa, want in zip(model.parameters(), p):
        torch.testing.assert_close(pa, want.detach(), rtol=1e-12, atol=1e-12)
    # the defaults are SPEC §1's and the sweep config's: θ_c = 0, G = 10, R = 2‖θ₀‖
    from antireg.experiments.config import SafeguardsCfg

    cfg, fresh = SafeguardsCfg(), mlp()
    default = aopt.AntiReg(fresh.parameters(), torch.optim.SGD, lam=-0.05, lr=0.5)
    assert default.penalty.center is None and default.clip.max_norm == cfg.grad_clip == 10.0
    theta0 = float(torch.sqrt(sum((p**2).sum() for p in mlp().parameters())))
    assert default.trust_region.radius == pytest.approx(cfg.trust_factor * theta0, rel=1e-12)


@pytest.mark.filterwarnings("ignore:AntiReg. no spectrum")
@pytest.mark.parametrize("flat", [False, True])
def test_antireg_keeps_one_copy_of_theta0(flat):
    """The penalty centre and the trust-region reference are the same memory (one θ₀)."""
    from antireg.models import make_model

    model = make_model("mlp", 3, 2, width=8, depth=1) if flat else mlp()  # one flat buffer, or tensors apart
    opt = aopt.AntiReg(model.parameters(), torch.optim.SGD, lam=-0.05, radius=0.05, center="init", lr=0.5)
    assert [t.data_ptr() for t in opt.penalty.center] == [t.data_ptr() for t in opt.trust_region.ref]
    if flat:
        from antireg.safeguards import flat_view

        assert flat_view(list(model.parameters())) is not None and flat_view(opt.penalty.center) is not None
    assert all(c.data_ptr() != p.data_ptr() for c, p in zip(opt.penalty.center, model.parameters()))


def test_antireg_spectral_clamp():
    model = mlp()
    eigs = torch.tensor([2.0, 5.0]).numpy()
    opt = aopt.AntiReg(model.parameters(), torch.optim.SGD, lam=-1.0, eigs=eigs, n=10, eta=0.1, lr=0.1)
    assert opt.lam_clamped and opt.lam == pytest.approx(-(1 - 0.1) * 2.0 / 10)
    with pytest.raises(ValueError, match="needs n"):
        aopt.AntiReg(model.parameters(), torch.optim.SGD, lam=-1.0, eigs=eigs, lr=0.1)


def test_gradscaler_fp16_inf_step_skipped_and_clipping():
    """An injected inf on the perturbed pass: θ and the base state untouched, the scale backs off,
    and the next step equals a step from the same state with no inf (clipping on the unscaled g)."""
    a = mlp()
    opt = aopt.AntiReg(a.parameters(), torch.optim.SGD, lam=-0.01, max_norm=0.3, lr=0.1, momentum=0.9,
                       rule=rules.SAM(0.1))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    calls = []

    def closure(inject=False):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.mse_loss(a(X).float(), Y.float()).double()
        calls.append(1)
        if inject and len(calls) == 2:
            loss = loss * float("inf")
        scaled = scaler.scale(loss)
        scaled.backward()
        return scaled  # the contract: the closure returns the scaled loss

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        true_loss = F.mse_loss(a(X).float(), Y.float()).double()
    assert float(opt.step(closure, scaler)) == pytest.approx(float(true_loss), rel=1e-6)  # unscaled
    before = copy.deepcopy((a.state_dict(), opt.state_dict()))
    calls.clear()
    opt.step(lambda: closure(inject=True), scaler)
    assert scaler.get_scale() == 2.0**9
    for k, v in before[0].items():
        assert torch.equal(a.state_dict()[k], v)
    assert all(torch.equal(opt.state[p]["momentum_buffer"], before[1]["state"][i]["momentum_buffer"])
               for i, p in enumerate(a.parameters()))
    calls.clear()
    opt.step(closure, scaler)  # a normal step still works after the skip
    assert all(torch.isfinite(p).all() for p in a.parameters())


def test_bf16_autocast_matches_trainstep():
    a, b = mlp(), mlp()
    a.float(), b.float()
    opt = aopt.SAM(a.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    ts = TrainStep(b, torch.optim.SGD(b.parameters(), lr=0.1), rules.SAM(0.1), autocast=torch.bfloat16)

    def closure():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.mse_loss(a(X.float()).float(), Y.float())
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
        ts(lambda: ((b(X.float()).float() - Y.float()) ** 2).mean(dim=1))
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls,kw,rule", CASES[:3] + CASES[6:], ids=["sam", "asam", "gsam", "gr_db", "igr_db", "gam",
                                                                  "gam_sam"])
def test_accumulation_equals_full_batch(cls, kw, rule):
    a, b = mlp(), mlp()
    oa = cls(a.parameters(), torch.optim.SGD, modules=a, lr=0.1, **kw)
    ob = cls(b.parameters(), torch.optim.SGD, modules=b, lr=0.1, **kw)

    def accumulated(create_graph=False):  # 4 micro-batches of 8: the closure accumulates, the rule sees the sum
        oa.zero_grad()
        total = 0.0
        for xb, yb in zip(X.split(8), Y.split(8)):
            loss = F.mse_loss(a(xb), yb) / 4
            loss.backward(create_graph=create_graph)
            total += loss.detach()
        return total

    for _ in range(2):
        la = oa.step(accumulated)
        lb = ob.step(torch_closure(b, ob))
        assert float(la) == pytest.approx(float(lb), rel=1e-12)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-12)


def test_docs_snippets_run():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "docs" / "optim.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 5
    for code in blocks:
        exec(compile(code, "docs/optim.md", "exec"), {})


def test_antireg_default_trust_region_on_a_zero_initialisation_says_what_to_do():
    """The default R = 2‖θ₀‖ is 0 for a zero-initialised model: a clear error naming the fix,
    and an explicit radius (or no trust region) works."""
    model = nn.Linear(3, 1).double()
    nn.init.zeros_(model.weight), nn.init.zeros_(model.bias)
    with pytest.raises(ValueError, match="θ₀ = 0 .* give a radius"):
        aopt.AntiReg(model.parameters(), torch.optim.SGD, lam=-1e-3, lr=0.1)
    for kw in ({"radius": 1.0}, {"radius_factor": None}):
        opt = aopt.AntiReg(model.parameters(), torch.optim.SGD, lam=-1e-3, lr=0.1, **kw)
        opt.step(torch_closure_linear(model, opt))
        assert all(torch.isfinite(p).all() for p in model.parameters())


def torch_closure_linear(model, opt):
    def closure():
        opt.zero_grad()
        loss = F.mse_loss(model(X), Y[:, :1])
        loss.backward()
        return loss
    return closure

