"""Gradient rules against independent oracles, in float64 on tiny networks.

The oracles never touch antireg's Batch/perturbed machinery: they evaluate the
loss functionally at explicit parameter values (torch.func.functional_call) and
differentiate with plain autograd, or with forward-over-reverse HVPs.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp

from antireg.rules import (
    ASAM,
    ERM,
    GAM,
    GSAM,
    IGR,
    RULES,
    SAM,
    Flooding,
    GradientNorm,
    frozen_norm_stats,
    make_rule,
)

X = torch.randn(24, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
Y = torch.randn(24, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

# One instance of every registered name, with parameters that make each non-trivial.
RULE_PARAMS = {
    "erm": {},
    "gr": {"gamma": 0.3, "mode": "fd_forward", "eps": 0.05},
    "gr_db": {"gamma": 0.3},
    "gr_fd_forward": {"gamma": 0.3, "eps": 0.05},
    "gr_fd_backward": {"gamma": 0.3, "eps": 0.05},
    "igr": {"lr": 0.2},
    "flooding": {"b": 5.0},
    "sam": {"rho": 0.1},
    "asam": {"rho": 0.3, "eta": 0.01},
    "gsam": {"rho": 0.1, "alpha": 0.4},
    "gam": {"rho": 0.1, "alpha": 0.3, "rho_sam": 0.05, "beta": 1.0},
}


def mlp(seed: int = 0, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(3, 6), nn.BatchNorm1d(6)] if bn else [nn.Linear(3, 6)]
    return nn.Sequential(*layers, nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def per_example(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y, reduction="none").mean(1)


def closure(model: nn.Module, x: torch.Tensor = X, y: torch.Tensor = Y):
    return lambda: per_example(model(x), y)


# ---- the oracle: parameters as a dict, loss as a pure function -----------------------


def theta(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def loss_at(model: nn.Module, th: dict[str, torch.Tensor]) -> torch.Tensor:
    return per_example(functional_call(model, th, (X,)), Y).mean()


def grad_at(model: nn.Module, th: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return grad(lambda t: loss_at(model, t))(th)


def hvp_at(model: nn.Module, th: dict, v: dict) -> dict:
    """H v by forward-over-reverse (jvp of grad): independent of double backprop."""
    return jvp(lambda t: grad_at(model, t), (th,), (v,))[1]


def lin(*terms):  # Σ cᵢ·dᵢ over (c, dict) pairs
    return {k: sum(c * d[k] for c, d in terms) for k in terms[0][1]}


def norm(d: dict) -> torch.Tensor:
    return torch.sqrt(sum((v**2).sum() for v in d.values()))


def rule_grad(rule, model: nn.Module, cl=None) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    rule(model, cl if cl is not None else closure(model))
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_dicts_close(a: dict, b: dict, **tol) -> None:
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol)


def dist(a: dict, b: dict) -> float:
    return float(norm(lin((1.0, a), (-1.0, b))))


# ---- GR / IGR --------------------------------------------------------------------------


def penalised_grad(model: nn.Module, gamma: float) -> dict[str, torch.Tensor]:
    """∇[L + (γ/2)‖∇L‖²] by autograd with create_graph=True."""
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    loss = loss_at(model, dict(zip(names, params)))
    g = torch.autograd.grad(loss, params, create_graph=True)
    penalised = loss + gamma / 2 * sum((gi**2).sum() for gi in g)
    return dict(zip(names, torch.autograd.grad(penalised, params)))


@pytest.mark.parametrize("gamma", [0.05, 0.5])
def test_db_equals_autograd_of_the_penalised_loss(gamma):
    model = mlp()
    assert_dicts_close(rule_grad(GradientNorm(gamma, "db"), model), penalised_grad(model, gamma))


def test_db_with_micro_batches_equals_the_full_batch_penalty():
    model = mlp()
    micro = [closure(model, X[:5], Y[:5]), closure(model, X[5:16], Y[5:16]), closure(model, X[16:], Y[16:])]
    assert_dicts_close(rule_grad(GradientNorm(0.3, "db"), model, micro), penalised_grad(model, 0.3))


def test_igr_is_the_penalty_h_over_4():
    h = 0.4
    model = mlp()
    assert_dicts_close(rule_grad(IGR(lr=h), model), penalised_grad(model, h / 2))  # L + (h/4)‖∇L‖²
    assert_dicts_close(rule_grad(IGR(lr=h), model), rule_grad(GradientNorm(h / 2), model), rtol=0, atol=0)


def test_finite_differences_converge_to_db_at_first_order():
    gamma, model = 0.2, mlp()
    exact = rule_grad(GradientNorm(gamma, "db"), model)
    epsilons = [1e-1, 1e-2, 1e-3]
    errors = {}
    for mode in ("fd_forward", "fd_backward"):
        errors[mode] = [dist(rule_grad(GradientNorm(gamma, mode, eps), model), exact) for eps in epsilons]
        assert errors[mode][0] > errors[mode][1] > errors[mode][2], (mode, errors[mode])
        for big, small in zip(errors[mode], errors[mode][1:]):
            assert 5 < big / small < 20, (mode, errors[mode])  # O(ε): ×10 per decade
    # Opposite-signed first-order errors: their mean is a central difference, O(ε²).
    central = [
        dist(
            lin(
                (0.5, rule_grad(GradientNorm(gamma, "fd_forward", eps), model)),
                (0.5, rule_grad(GradientNorm(gamma, "fd_backward", eps), model)),
            ),
            exact,
        )
        for eps in epsilons[:2]
    ]
    assert 50 < central[0] / central[1] < 200, central


def test_fd_forward_formula_against_oracle():
    gamma, eps, model = 0.3, 0.07, mlp()
    th = theta(model)
    g = grad_at(model, th)
    shifted = grad_at(model, lin((1.0, th), (eps, g)))
    expected = lin((1 - gamma / eps, g), (gamma / eps, shifted))
    assert_dicts_close(rule_grad(GradientNorm(gamma, "fd_forward", eps), model), expected)


# ---- SAM family ------------------------------------------------------------------------


def test_sam_is_the_gradient_at_the_normalised_ascent_point():
    rho, model = 0.2, mlp()
    th = theta(model)
    g = grad_at(model, th)
    expected = grad_at(model, lin((1.0, th), (rho / norm(g), g)))
    assert_dicts_close(rule_grad(SAM(rho), model), expected)


def test_sam_equals_fgr_with_gamma_equal_eps_equal_rho_over_grad_norm():
    # F-GR: (1 − γ/ε) g + (γ/ε) ∇L(θ + εg); at γ = ε this is ∇L(θ + εg), and with
    # ε = ρ/‖g‖ the ascent point is SAM's θ + ρ g/‖g‖.
    rho, model = 0.2, mlp()
    eps = float(rho / norm(grad_at(model, theta(model))))
    assert_dicts_close(rule_grad(SAM(rho), model), rule_grad(GradientNorm(eps, "fd_forward", eps), model))


def test_asam_ascent_uses_the_elementwise_normalisation():
    rho, eta, model = 0.3, 0.01, mlp()
    th = theta(model)
    g = grad_at(model, th)
    t = {k: th[k].abs() + eta if "weight" in k else torch.ones_like(th[k]) for k in th}
    tg = {k: t[k] * g[k] for k in g}
    eps = {k: rho * t[k] * tg[k] / norm(tg) for k in g}  # ρ T² g / ‖T g‖
    expected = grad_at(model, lin((1.0, th), (1.0, eps)))
    assert_dicts_close(rule_grad(ASAM(rho, eta), model), expected)


def test_gsam_with_alpha_zero_is_sam():
    model = mlp()
    assert_dicts_close(rule_grad(GSAM(0.2, alpha=0.0), model), rule_grad(SAM(0.2), model), rtol=0, atol=0)


def test_gsam_removes_alpha_times_the_orthogonal_part():
    rho, alpha, model = 0.2, 0.5, mlp()
    th = theta(model)
    g = grad_at(model, th)
    gp = grad_at(model, lin((1.0, th), (rho / norm(g), g)))
    flat_g = torch.cat([v.flatten() for v in g.values()])
    flat_gp = torch.cat([v.flatten() for v in gp.values()])
    g_perp = lin((1.0, g), (-float(flat_g @ flat_gp / (flat_gp @ flat_gp)), gp))
    assert_dicts_close(rule_grad(GSAM(rho, alpha), model), lin((1.0, gp), (-alpha, g_perp)))


def test_gsam_rho_follows_the_learning_rate_between_its_bounds():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rule = GSAM(rho=0.2, alpha=0.0, rho_min=0.02)
    rule.bind(opt)
    seen = []
    for lr in (0.1, 0.05, 0.0):
        opt.param_groups[0]["lr"] = lr  # as a scheduler would set it
        seen.append(rule.current_rho())
        # the step really uses ρ_t: α = 0 makes it SAM with that ρ
        assert_dicts_close(rule_grad(rule, model), rule_grad(SAM(seen[-1]), model), rtol=0, atol=0)
    assert seen == pytest.approx([0.2, 0.11, 0.02])


def test_gsam_schedule_needs_an_optimizer():
    with pytest.raises(RuntimeError, match="bind"):
        GSAM(0.1, rho_min=0.01)(mlp(), closure(mlp()))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # inside torch.func.jvp
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gam_against_a_forward_mode_oracle(beta):
    rho, alpha, rho_sam, model = 0.1, 0.3, 0.05, mlp()
    th = theta(model)
    g = grad_at(model, th)
    f = lin((1 / norm(g), hvp_at(model, th, g)))  # ∇‖∇L‖ = Hg/‖g‖
    adv = lin((1.0, th), (rho / norm(f), f))
    g_adv = grad_at(model, adv)
    grad_r1 = lin((rho / norm(g_adv), hvp_at(model, adv, g_adv)))  # ρ ∇‖∇L‖ at θ_adv
    g_sam = grad_at(model, lin((1.0, th), (rho_sam / norm(g), g)))
    expected = lin((1.0, g), (alpha, grad_r1), (beta, g_sam), (-beta, g))
    assert_dicts_close(rule_grad(GAM(rho, alpha, rho_sam=rho_sam, beta=beta), model), expected)


# ---- flooding --------------------------------------------------------------------------


def test_flooding_flips_the_gradient_below_the_flood_level():
    model = mlp()
    loss = float(loss_at(model, theta(model)))
    g = grad_at(model, theta(model))
    assert_dicts_close(rule_grad(Flooding(b=loss * 0.5), model), g)  # above b: descent
    assert_dicts_close(rule_grad(Flooding(b=loss * 2.0), model), lin((-1.0, g)))  # below b: ascent


def test_per_example_flooding_floods_each_loss():
    model = mlp()
    b = float(per_example(model(X), Y).detach().median())  # some examples above b, some below
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    ell = per_example(functional_call(model, dict(zip(names, params)), (X,)), Y)
    expected = dict(zip(names, torch.autograd.grad(((ell - b).abs() + b).mean(), params)))
    got = rule_grad(Flooding(b, per_example=True), model)
    assert_dicts_close(got, expected)
    assert dist(got, grad_at(model, theta(model))) > 1e-3  # and differs from the batch-level rule here


# ---- the contract, for every rule ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_contract(name):
    model = mlp(bn=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    storage = {n: p.data_ptr() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss = make_rule(name, **RULE_PARAMS[name])(model, closure(model))
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]), f"{name} did not restore θ exactly"
        assert p.data_ptr() == storage[n], f"{name} left θ in other memory (aliases such as a flat buffer break)"
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert not loss.requires_grad
    with torch.no_grad():
        plain = per_example(model(X), Y).mean()
    torch.testing.assert_close(loss, plain)


@pytest.mark.parametrize("micro", [False, True])
@pytest.mark.parametrize("name", sorted(RULES))
def test_extra_passes_leave_batchnorm_statistics_as_erm_does(name, micro):
    def run(rule):
        model = mlp(seed=3, bn=True)
        cl = [closure(model, X[:10], Y[:10]), closure(model, X[10:], Y[10:])] if micro else closure(model)
        model.zero_grad(set_to_none=True)
        rule(model, cl)
        return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("1.")}

    reference, got = run(ERM()), run(make_rule(name, **RULE_PARAMS[name]))
    for k in reference:
        assert torch.equal(got[k], reference[k]), (name, k)


def test_frozen_norm_stats_restores_cumulative_average_layers():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=None)).double()
    model(X)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with frozen_norm_stats(model):
        model(X * 3 + 1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# ---- the registry ----------------------------------------------------------------------


def test_make_rule_builds_every_name():
    assert set(RULE_PARAMS) == set(RULES)
    assert isinstance(make_rule("gr_fd_backward", gamma=0.1), GradientNorm)
    assert make_rule("gr_fd_backward", gamma=0.1).mode == "fd_backward"
    assert make_rule("igr", lr=0.2).gamma == pytest.approx(0.1)


def test_make_rule_rejects_bad_input_clearly():
    with pytest.raises(ValueError, match="valid names: erm, gr, gr_db"):
        make_rule("adam")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['radius'\]; valid parameters: rho=0.05"):
        make_rule("sam", radius=0.1)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['mode'\]"):
        make_rule("gr_db", gamma=0.1, mode="fd_forward")
    with pytest.raises(ValueError, match=r"missing parameter\(s\) \['gamma'\]"):
        make_rule("gr_fd_forward")
    with pytest.raises(ValueError, match="mode must be"):
        make_rule("gr", gamma=0.1, mode="central")


def test_closure_must_return_per_example_losses():
    model = mlp()
    with pytest.raises(ValueError, match="per-example"):
        ERM()(model, lambda: per_example(model(X), Y).mean())
