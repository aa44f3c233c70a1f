import math

import numpy as np
import torch

from antireg.metrics import regression_metrics
from antireg.models import make_model
from antireg.penalty import ProximityPenalty
from antireg.safeguards import GradClip, TrustRegion
from antireg.step import TrainStep
from antireg.train import fit, squared_error


def _linear_problem(n=60, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.3 + 0.5 * rng.normal(size=n)
    return torch.tensor(X), torch.tensor(y)


def test_ar_on_a_linear_model_converges_to_the_closed_form():
    """Full-batch GD on ½·MSE + λ·½‖θ‖² (bias included) solves (AᵀA/n + λI)θ = Aᵀy/n, A = [X, 1]."""
    X, y = _linear_problem()
    n = len(y)
    A = np.hstack([X.numpy(), np.ones((n, 1))])
    lam = -0.5 * np.linalg.eigvalsh(A.T @ A / n).min()  # negative, inside the safe region
    expected = np.linalg.solve(A.T @ A / n + lam * np.eye(A.shape[1]), A.T @ y.numpy() / n)

    torch.manual_seed(0)
    model = make_model("linear", 4).double()
    params = list(model.parameters())
    step = TrainStep(model, torch.optim.SGD(params, lr=0.2), penalty=ProximityPenalty(params, lam))
    for _ in range(3000):  # plain steps: fit()'s checkpoint would pick by the unpenalised loss
        info = step(lambda: squared_error(model(X), y))
    got = np.concatenate([model[1].weight.detach().numpy().ravel(), model[1].bias.detach().numpy()])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert math.isfinite(info.loss)
    # and the negative λ really moved it away from plain least squares
    ols = np.linalg.lstsq(A, y.numpy(), rcond=None)[0]
    assert np.linalg.norm(got) > np.linalg.norm(ols)


def test_divergence_is_detected_and_recorded():
    X, y = _linear_problem()
    torch.manual_seed(0)
    model = make_model("linear", 4).double()
    params = list(model.parameters())
    step = TrainStep(model, torch.optim.SGD(params, lr=50.0))  # far beyond 2/L: blows up
    result = fit(model, step, squared_error, (X, y), (X, y), epochs=500)
    assert result.diverged
    assert "non-finite" in result.divergence
    assert len(result.history) < 500
    # the best finite checkpoint is restored
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_safeguards_prevent_that_divergence():
    X, y = _linear_problem()
    torch.manual_seed(0)
    model = make_model("linear", 4).double()
    params = list(model.parameters())
    n = len(y)
    lam = -10.0  # far beyond the spectral bound: unbounded below without safeguards
    step = TrainStep(model, torch.optim.SGD(params, lr=0.05), penalty=ProximityPenalty(params, lam),
                     clip=GradClip(params, 1.0), trust_region=TrustRegion(params, radius=3.0))
    result = fit(model, step, squared_error, (X, y), (X, y), epochs=200)
    assert not result.diverged
    assert step.trust_region.rate > 0.5
    unsafe = make_model("linear", 4).double()
    p2 = list(unsafe.parameters())
    bad = fit(unsafe, TrainStep(unsafe, torch.optim.SGD(p2, lr=0.05), penalty=ProximityPenalty(p2, lam)),
              squared_error, (X, y), (X, y), epochs=2000)
    assert bad.diverged


def test_history_counts_match_safeguard_counters_and_minibatches():
    X, y = _linear_problem(n=50)
    torch.manual_seed(1)
    model = make_model("mlp", 4, width=8, depth=1).double()
    params = list(model.parameters())
    step = TrainStep(model, torch.optim.Adam(params, lr=0.05), penalty=ProximityPenalty(params, -0.1),
                     clip=GradClip(params, 0.5), trust_region=TrustRegion(params, factor=0.2))
    result = fit(model, step, squared_error, (X, y), (X, y), epochs=7, batch_size=16,
                 generator=torch.Generator().manual_seed(0))
    assert [h["steps"] for h in result.history] == [4] * 7  # ceil(50/16)
    assert result.steps == 28 == step.clip.steps == step.trust_region.steps
    assert sum(h["clip_events"] for h in result.history) == step.clip.events
    assert sum(h["proj_events"] for h in result.history) == step.trust_region.events
    assert math.isfinite(result.best_val_loss)
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)


def test_regression_metrics_against_sklearn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(0)
    y, p = rng.normal(size=40), rng.normal(size=40)
    m = regression_metrics(y, p)
    assert m["rmse"] == np.sqrt(mean_squared_error(y, p))
    assert m["mae"] == mean_absolute_error(y, p)
    np.testing.assert_allclose(m["r2"], r2_score(y, p))


def test_fixed_budget_with_replacement_is_the_learned_optimizer_protocol():
    """replacement + max_steps + keep="last" equal the hand loop of the learned-optimizer
    evaluation: T steps on torch.randint minibatches of one generator, final parameters."""
    X, y = _linear_problem(n=50)

    def fresh():
        torch.manual_seed(3)
        model = make_model("mlp", 4, width=8, depth=1).double()
        return model, TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))

    model, step = fresh()
    g = torch.Generator().manual_seed(7)
    for _ in range(11):
        idx = torch.randint(50, (16,), generator=g)
        step(lambda: squared_error(model(X[idx]), y[idx]))
    want = [p.detach().clone() for p in model.parameters()]

    model, step = fresh()
    result = fit(model, step, squared_error, (X, y), (X, y), epochs=3, batch_size=16,
                 generator=torch.Generator().manual_seed(7), replacement=True, max_steps=11, keep="last")
    assert result.steps == 11 and [h["steps"] for h in result.history] == [4, 4, 3]
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(p.detach(), w, rtol=0, atol=0)
    # keep="best" (the default) restores the best epoch instead
    model, step = fresh()
    best = fit(model, step, squared_error, (X, y), (X, y), epochs=3, batch_size=16,
               generator=torch.Generator().manual_seed(7), replacement=True, max_steps=11)
    assert best.best_val_loss == min(h["val_loss"] for h in best.history)


def test_the_loop_keeps_no_array_per_epoch(monkeypatch):
    """A long fit must let each epoch's activations be reused by the next. A small array
    kept per epoch on the C heap (the loop once kept a numpy mask per epoch in its log)
    lands in the block the freed activations left, so the next epoch's do not fit there
    and glibc grows the heap: by about an activation an epoch, 6 GB over a packaged sweep.
    numpy's data allocations show in tracemalloc (their own domain), so count those alive
    between an early and a late epoch: the per-epoch log must hold Python objects only."""
    import tracemalloc

    from antireg.rules import make_rule
    from antireg.vectorised import StackedStepper, fit_stacked

    numpy_domain = tracemalloc.DomainFilter(True, 389047)  # numpy's NPY_TRACE_DOMAIN
    M, n = 3, 40
    torch.manual_seed(0)
    models = [make_model("mlp", 5, 1, 8, 1) for _ in range(M)]
    steps = [TrainStep(m, torch.optim.SGD(m.parameters(), lr=1e-3), make_rule("erm")) for m in models]
    data = [(torch.randn(n, 5), torch.randn(n)) for _ in range(M)]
    counts, real = [], StackedStepper.val_losses

    def counted(self):  # once an epoch
        counts.append(len(tracemalloc.take_snapshot().filter_traces([numpy_domain]).traces))
        return real(self)

    monkeypatch.setattr(StackedStepper, "val_losses", counted)
    tracemalloc.start()
    try:
        fit_stacked(models, steps, squared_error, data, [(x[:10], y[:10]) for x, y in data], 120)
    finally:
        tracemalloc.stop()
    assert counts[110] - counts[10] < 5, f"{counts[110] - counts[10]} numpy arrays kept over 100 epochs"
