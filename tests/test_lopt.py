"""Learned optimizers: the update, meta-gradients, meta-training, checkpoints.

Meta-gradients are checked in float64 against central finite differences of the
meta-objective's value, and against a functional SAM objective written here
independently of antireg.rules.
"""

import copy
import math
import pickle

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from antireg.lopt import (
    Arch,
    CheckpointError,
    LearnedOptimizer,
    LOptNet,
    MetaObjective,
    MetaSettings,
    load_lopt,
    meta_train,
    quadratic_task,
    read_header,
    save_lopt,
    unroll,
)
from antireg.lopt.meta import start
from antireg.optimizers.learned import BETAS, N_FEATURES, features

ARCHS = [Arch("lstm", 6, 0.05), Arch("mlp", 6, 0.05)]


def net64(arch: Arch, seed: int = 0, head_scale: float = 10.0) -> LOptNet:
    """A float64 net whose head is not near zero, so the update depends visibly on φ."""
    torch.manual_seed(seed)
    net = LOptNet(arch).double()
    with torch.no_grad():
        net.head.weight.mul_(head_scale)
    return net


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.kind)
def test_update_has_shapes_and_is_finite(arch: Arch) -> None:
    net = LOptNet(arch)
    gen = torch.Generator().manual_seed(0)
    for shape in [(3,), (4, 5), (2, 3, 3, 3)]:
        p, g = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen) * 1e3
        state = net.init_state(p)
        for _ in range(3):
            delta, state = net(p, g, state)
            assert delta.shape == p.shape and torch.isfinite(delta).all() and delta.abs().sum() > 0
            assert state["m"].shape == (len(BETAS), *shape) and state["v"].shape == shape
            p = p + delta
        assert features(p, torch.zeros(shape), state["m"], state["v"], state["step"]).shape == (p.numel(), N_FEATURES)
        delta, _ = net(p, torch.zeros(shape), net.init_state(p))  # zero gradient: still finite
        assert torch.isfinite(delta).all()


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.kind)
@pytest.mark.parametrize("data", ["train", "val"])
def test_meta_gradient_matches_finite_differences(arch: Arch, data: str) -> None:
    """Exact mode (second_order=True): ∇_φ of the meta-objective = central differences of its value.
    ``val`` goes through the rule-based surrogate (the quadratic's val part is its train part)."""
    net, task, objective = net64(arch), quadratic_task(3, dim=4), MetaObjective(data=data)

    def meta(backward: bool) -> float:
        surrogate, plain, _ = unroll(net, task, objective, start(net, task), 4, torch.Generator(), second_order=True)
        if backward:
            net.zero_grad()
            surrogate.backward()
        return plain.item()

    meta(backward=True)
    grad = parameters_to_vector([p.grad for p in net.parameters()])
    phi = parameters_to_vector(net.parameters()).detach()
    for k in range(3):
        v = torch.randn(phi.shape, generator=torch.Generator().manual_seed(k), dtype=phi.dtype)
        values = []
        for sign in (1, -1):
            vector_to_parameters(phi + sign * 1e-6 * v, net.parameters())
            values.append(meta(backward=False))
        vector_to_parameters(phi, net.parameters())
        fd = (values[0] - values[1]) / 2e-6
        assert float(grad @ v) == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_sam_meta_gradient_matches_functional_sam_objective() -> None:
    """The rule-based surrogate for SAM has the gradient of J = (1/T) Σ_t L(θ_t + sg(ρ g_t/‖g_t‖))."""
    rho, steps = 0.3, 3
    net, task = net64(ARCHS[0]), quadratic_task(5, dim=4)
    surrogate, _, _ = unroll(net, task, MetaObjective("sam", {"rho": rho}), start(net, task), steps, torch.Generator())
    net.zero_grad()
    surrogate.backward()
    ours = [p.grad.clone() for p in net.parameters()]

    batch = task.parts["train"]
    params = {n: p.requires_grad_() for n, p in task.init_params().items()}
    states = {n: net.init_state(p) for n, p in params.items()}
    grads = torch.autograd.grad(task.loss(params, batch), list(params.values()))
    total = 0.0
    for _ in range(steps):
        moved = {n: net(p, g, states[n]) for (n, p), g in zip(params.items(), grads)}
        params = {n: params[n] + d for n, (d, _) in moved.items()}
        states = {n: s for n, (_, s) in moved.items()}
        grads = torch.autograd.grad(task.loss(params, batch), list(params.values()), retain_graph=True)
        scale = rho / torch.sqrt(sum((g**2).sum() for g in grads))
        total = total + task.loss({n: p + scale * g for (n, p), g in zip(params.items(), grads)}, batch) / steps
    reference = torch.autograd.grad(total, list(net.parameters()))
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def final_loss(net: LOptNet, seed: int, steps: int = 30) -> float:
    """Train a held-out quadratic with the net as a torch.optim.Optimizer; the final loss."""
    task = quadratic_task(seed, dim=6)
    model = copy.deepcopy(task.model)
    opt = LearnedOptimizer(model.parameters(), net)
    X, y = task.parts["train"]
    for _ in range(steps):
        opt.zero_grad()
        task.loss_fn(model(X), y).mean().backward()
        opt.step()
    with torch.no_grad():
        return task.loss_fn(model(X), y).mean().item()


def test_meta_training_beats_initialisation_on_heldout_quadratics() -> None:
    net = net64(Arch("lstm", 8, 0.05), head_scale=1.0)
    held_out = range(1000, 1008)
    before = sum(final_loss(net, s) for s in held_out) / len(held_out)
    settings = MetaSettings(iterations=40, unroll=10, truncations=3, meta_lr=0.01)
    history = meta_train(net, lambda rng: quadratic_task(rng.randrange(1000), dim=6), MetaObjective(), settings)
    after = sum(final_loss(net, s) for s in held_out) / len(held_out)
    assert len(history) == 40 and not any(r["skipped"] for r in history)
    assert after < 0.2 * before, (before, after)


def test_save_load_round_trip_gives_identical_updates(tmp_path) -> None:
    net = LOptNet(Arch("lstm", 7, 0.02))
    path = save_lopt(net, tmp_path / "lo.pt", info={"note": "test"})
    loaded = load_lopt(path, Arch("lstm", 7, 0.02))
    assert read_header(path)["info"] == {"note": "test"}
    task = quadratic_task(0, dim=5, dtype=torch.float32)
    X, y = task.parts["train"]
    models = [copy.deepcopy(task.model) for _ in range(2)]
    opts = [LearnedOptimizer(m.parameters(), n) for m, n in zip(models, (net, loaded))]
    for _ in range(5):
        for model, opt in zip(models, opts):
            opt.zero_grad()
            task.loss_fn(model(X), y).mean().backward()
            opt.step()
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b)
    assert not torch.equal(models[0][1].weight, task.model[1].weight)  # the updates did move θ


def test_wrong_or_unsafe_checkpoints_give_clear_errors(tmp_path) -> None:
    path = save_lopt(LOptNet(Arch("lstm", 8)), tmp_path / "lstm.pt")
    with pytest.raises(CheckpointError, match=r"kind='lstm'.*not the expected.*kind='mlp'"):
        load_lopt(path, Arch("mlp", 8))
    blob = torch.load(path, weights_only=True)  # a header that lies about the weights
    blob["header"] = blob["header"].replace('"hidden": 8', '"hidden": 9')
    torch.save(blob, tmp_path / "lying.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_lopt(tmp_path / "lying.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_lopt(tmp_path / "missing.pt")

    class Payload:  # unpickling would call os.system
        def __reduce__(self):
            return (__import__("os").system, ("echo pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(CheckpointError, match="not a learned-optimizer checkpoint"):
        load_lopt(tmp_path / "evil.pt")
