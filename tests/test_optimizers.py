"""antireg.optimizers: configs, names and make_optimizer against hand-computed updates."""

from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ValidationError

from antireg.experiments.config import ConfigError
from antireg.lopt.io import save_lopt
from antireg.optimizers.learned import Arch, LOptNet, LearnedOptimizer
from antireg.optimizers import (
    OPTIMIZER_NAMES,
    LearnedCfg,
    OptimizerCfg,
    Optimizers,
    checkpoint_path,
    kind_of,
    make_optimizer,
    resolve_checkpoints,
)


class Sweep(BaseModel):
    optimizers: Optimizers


def one_step(name: str, cfg, theta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    p = torch.nn.Parameter(theta.clone())
    opt = make_optimizer(name, cfg, [p])
    p.grad = grad.clone()
    opt.step()
    return p.detach()


def test_names() -> None:
    assert OPTIMIZER_NAMES == ("sgd", "adam", "learned")
    assert [kind_of(n) for n in ("sgd", "adam_fast", "learned_sam2")] == ["sgd", "adam", "learned"]
    for bad in ("rmsprop", "sgd_", "learned_Sam", "sgdx", "learned_a_b", ""):
        with pytest.raises(ValueError, match="unknown optimizer"):
            kind_of(bad)


def test_hand_designed_configs_dump_as_before() -> None:
    """The dump is part of every run id: the fields, order and defaults of the old OptimizerCfg."""
    assert OptimizerCfg(lr=0.1).model_dump() == {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}
    cfg = Sweep.model_validate({"optimizers": {"sgd": {"lr": 0.1}, "adam": {"lr": 1e-3, "weight_decay": 0.5}}})
    assert cfg.optimizers == {"sgd": OptimizerCfg(lr=0.1), "adam": OptimizerCfg(lr=1e-3, weight_decay=0.5)}


@pytest.mark.parametrize(
    ("optimizers", "message"),
    [
        ({"sgd": {"checkpoint": "x.pt"}}, r"optimizers.sgd.lr: Field required.*optimizers.sgd.checkpoint: Extra inputs"),
        ({"learned": {"lr": 0.1}}, r"optimizers.learned.checkpoint: Field required"),
        ({"sgd": {"lr": -1.0}}, r"optimizers.sgd.lr: Input should be greater than 0"),
        ({"rmsprop": {"lr": 0.1}}, r"unknown optimizer 'rmsprop'"),
        ({}, r"at least 1 item"),
        ({"learned": {"checkpoint": "x", "sha256": "abc"}}, r"optimizers.learned.sha256: String should match"),
    ],
)
def test_bad_optimizer_configs_name_the_entry(optimizers: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Sweep.model_validate({"optimizers": optimizers})


def test_sgd_and_adam_first_steps_match_their_formulas() -> None:
    theta, grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.tensor([0.3, -0.1, 2.0], dtype=torch.float64)
    lr, wd = 0.1, 0.01
    g = grad + wd * theta
    sgd = one_step("sgd_x", OptimizerCfg(lr=lr, momentum=0.5, weight_decay=wd), theta, grad)
    torch.testing.assert_close(sgd, theta - lr * g, rtol=0, atol=1e-15)  # first step: v = g
    adam = one_step("adam", OptimizerCfg(lr=lr, weight_decay=wd), theta, grad)
    # bias-corrected m̂ = g, v̂ = g², so Δθ = −lr·g/(|g| + ε)
    torch.testing.assert_close(adam, theta - lr * g / (g.abs() + 1e-8), rtol=0, atol=1e-12)
    with pytest.raises(TypeError, match="takes a LearnedCfg"):
        make_optimizer("learned", OptimizerCfg(lr=0.1), [torch.nn.Parameter(theta)])


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_lopt(LOptNet(Arch("mlp", 8, 0.02)), tmp_path / "out" / "lopt" / "tiny.pt")


def test_learned_step_is_the_nets_update(checkpoint: Path) -> None:
    theta, grad = torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), torch.randn(4, 3)
    net = LOptNet(Arch("mlp", 8, 0.02))
    net.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    with torch.no_grad():
        delta, _ = net(theta, grad, net.init_state(theta))
    cfg = LearnedCfg(checkpoint=str(checkpoint))
    torch.testing.assert_close(one_step("learned", cfg, theta, grad), theta + delta, rtol=0, atol=0)


def test_learned_lr_scales_the_step(checkpoint: Path) -> None:
    """A group's lr is the step scale η: halving it halves Δθ (what a scheduler does)."""
    theta, grad = torch.randn(5), torch.randn(5)
    moves = []
    for scale in (1.0, 0.5):
        p = torch.nn.Parameter(theta.clone())
        opt = make_optimizer("learned", LearnedCfg(checkpoint=str(checkpoint)), [p])
        assert opt.param_groups[0]["lr"] == 0.02
        opt.param_groups[0]["lr"] *= scale
        p.grad = grad
        opt.step()
        moves.append(p.detach() - theta)
    torch.testing.assert_close(moves[1], 0.5 * moves[0])


def test_learned_state_dict_resumes_exactly(checkpoint: Path) -> None:
    """Five steps straight equal two steps, a save, a fresh optimizer loaded from it, three steps."""
    cfg = LearnedCfg(checkpoint=str(checkpoint))
    grads = [torch.randn(3, 2, generator=torch.Generator().manual_seed(k)) for k in range(5)]

    def steps(opt: torch.optim.Optimizer, p: torch.nn.Parameter, gs: list[torch.Tensor]) -> None:
        for g in gs:
            p.grad = g + p.detach()  # depends on θ, so a wrong state shows
            opt.step()

    a = torch.nn.Parameter(torch.ones(3, 2))
    steps(opt := make_optimizer("learned", cfg, [a]), a, grads)
    b = torch.nn.Parameter(torch.ones(3, 2))
    steps(first := make_optimizer("learned", cfg, [b]), b, grads[:2])
    saved = first.state_dict()
    assert saved["state"][0]["step"] == 2 and saved["param_groups"][0]["lr"] == 0.02
    second = make_optimizer("learned", cfg, [b])
    second.load_state_dict(saved)
    steps(second, b, grads[2:])
    assert isinstance(opt, LearnedOptimizer) and torch.equal(a, b)


def test_resolve_checkpoints_by_name_and_digest(checkpoint: Path, tmp_path) -> None:
    optimizers = {"sgd": OptimizerCfg(lr=0.1), "learned_t": LearnedCfg(checkpoint="tiny")}
    resolved = resolve_checkpoints(optimizers, tmp_path / "out")
    assert resolved["sgd"] is optimizers["sgd"]
    assert Path(resolved["learned_t"].checkpoint) == checkpoint == checkpoint_path("tiny", tmp_path / "out")
    import hashlib

    assert resolved["learned_t"].sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    make_optimizer("learned_t", resolved["learned_t"], [torch.nn.Parameter(torch.zeros(2))])
    # a checkpoint retrained after the sweep began is refused, not silently mixed into its results
    save_lopt(LOptNet(Arch("mlp", 8, 0.03)), checkpoint)
    with pytest.raises(ConfigError, match="changed since the sweep began"):
        make_optimizer("learned_t", resolved["learned_t"], [torch.nn.Parameter(torch.zeros(2))])


def test_missing_or_corrupt_checkpoints_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"lopt/nothere\.pt not found"):
        resolve_checkpoints({"learned": LearnedCfg(checkpoint="nothere")}, tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for call in (lambda c: resolve_checkpoints({"learned": c}, tmp_path),
                 lambda c: make_optimizer("learned", c, [torch.nn.Parameter(torch.zeros(1))])):
        with pytest.raises(ConfigError, match="not a learned-optimizer checkpoint"):
            call(LearnedCfg(checkpoint=str(tmp_path / "junk.pt")))
