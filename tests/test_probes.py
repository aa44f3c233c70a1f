"""antireg.probes: sharpness probes against closed forms, and on a model's loss."""

import math

import pytest
import torch

from antireg.models import make_model
from antireg.probes import max_loss_in_ball, model_probes, sharpness_probes
from antireg.train import squared_error


def test_probes_exact_on_linear_and_radial_losses() -> None:
    c, theta, rho = torch.tensor([3.0, -4.0]), [torch.tensor([0.5, 0.5])], 0.1
    probes = sharpness_probes(lambda th: (c * th[0]).sum(), theta, rho)
    assert probes["grad_norm"] == pytest.approx(5.0)
    assert probes["surrogate_gap"] == pytest.approx(rho * 5.0)
    assert probes["sharpness"] == pytest.approx(rho * 5.0)
    # ½λ‖θ‖²: the worst point of the ball lies along θ, so the maximum is ½λ(‖θ‖ + ρ)².
    lam, theta = 4.0, [torch.tensor([0.6, 0.8], dtype=torch.float64)]
    top = max_loss_in_ball(lambda th: 0.5 * lam * (th[0] ** 2).sum(), theta, rho, steps=10)
    assert top == pytest.approx(0.5 * lam * (1.0 + rho) ** 2)
    assert math.isclose(sharpness_probes(lambda th: 0.5 * lam * (th[0] ** 2).sum(), theta, rho)["max_loss"], top)


def test_model_probes_are_those_of_the_models_mean_loss() -> None:
    """On a linear model, model_probes equals sharpness_probes of ½·mean((Xw + b − y)²) written
    by hand, and its grad_norm the closed form ‖[Xᵀr, Σr]/n‖ with r the residuals."""
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(20, 3, generator=gen, dtype=torch.float64), torch.randn(20, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    model = make_model("linear", 3).double()
    w, b = (p.detach() for p in model.parameters())

    def by_hand(theta: list[torch.Tensor]) -> torch.Tensor:
        return 0.5 * ((X @ theta[0].reshape(-1) + theta[1] - y) ** 2).mean()

    probes = model_probes(model, squared_error, X, y, rho=0.1, steps=5)
    expected = sharpness_probes(by_hand, [w, b], rho=0.1, steps=5)
    assert probes == pytest.approx({"train_loss": expected.pop("loss"), **expected}, rel=1e-12)
    r = X @ w.reshape(-1) + b - y
    assert probes["grad_norm"] == pytest.approx(float(torch.cat([X.T @ r, r.sum().view(1)]).norm() / len(y)))
    assert probes["sharpness"] > 0 and torch.equal(next(model.parameters()).detach(), w)  # θ left as it was
