import torch

from antireg.penalty import ProximityPenalty


def _params():
    torch.manual_seed(0)
    return [torch.randn(3, 4, dtype=torch.float64, requires_grad=True), torch.randn(4, dtype=torch.float64, requires_grad=True)]


def test_gradient_equals_autograd_of_the_signed_penalty():
    for lam in (-0.7, 0.0, 0.3):
        for center in ("zero", "init"):
            params = _params()
            pen = ProximityPenalty(params, lam, center)
            with torch.no_grad():  # move away from θ₀ so the init centre matters
                for p in params:
                    p.add_(1.0)
            for p in params:
                p.grad = torch.zeros_like(p)
            pen()
            expected = torch.autograd.grad(pen.value(), params, allow_unused=True)
            for p, e in zip(params, expected):
                torch.testing.assert_close(p.grad, e if e is not None else torch.zeros_like(p))


def test_value_is_half_lambda_squared_distance():
    params = _params()
    pen = ProximityPenalty(params, -2.0, "init")
    with torch.no_grad():
        params[0].add_(0.5)
    assert float(pen.value()) == -2.0 * 0.5 * (0.5**2 * 12)


def test_gradients_add_to_the_loss_gradient():
    params = _params()
    for p in params:
        p.grad = torch.ones_like(p)
    ProximityPenalty(params, -0.5)()
    torch.testing.assert_close(params[1].grad, 1.0 - 0.5 * params[1].detach())
