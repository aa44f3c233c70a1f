"""antireg.optim in the ecosystem: DistributedDataParallel (gloo, 2 CPU processes), PyTorch
Lightning, Hugging Face accelerate and torch.compile, each against a plain single-process loop
with the same wrapper (float64).

The DDP workers are this file run as a script (``python tests/test_optim_integration.py RANK
WORLD STORE OUT``): one spawn of two processes trains every rule in sequence and saves the
parameters; the test process computes the full-batch oracle and compares.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from antireg import optim as aopt
from antireg import rules
from antireg.rules.base import frozen_norm_stats

pytestmark = pytest.mark.filterwarnings("ignore:AntiReg. no spectrum given")

N, STEPS = 16, 3  # N rows, split into two equal halves (one per rank)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, 3, generator=g, dtype=torch.float64), torch.randn(N, 2, generator=g, dtype=torch.float64)


def mlp(bn: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(3, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.Tanh(), nn.Linear(8, 2)]
    return nn.Sequential(*layers).double()


def sgd(cls, **kw):
    return lambda params, modules: cls(params, torch.optim.SGD, modules=modules, lr=0.1, momentum=0.9, **kw)


# name → wrapper factory(params, modules); every rule of antireg.optim, and AntiReg with clipping and a
# trust region tight enough to act (so r_clip and r_proj are compared too)
RULES = {
    "sam": sgd(aopt.SAM, rho=0.1),
    "asam": sgd(aopt.ASAM, rho=0.3, eta=0.01),
    "gsam": sgd(aopt.GSAM, rho=0.1, alpha=0.4),
    "gradnorm_fwd": sgd(aopt.GradNorm, gamma=0.3, mode="fd_forward", eps=0.05),
    "gradnorm_bwd": sgd(aopt.GradNorm, gamma=0.3, mode="fd_backward", eps=0.05),
    "igr": sgd(aopt.IGR, h=0.2, eps=0.05),
    "antireg": sgd(aopt.AntiReg, lam=-0.05, max_norm=0.3, radius=0.05),
    "antireg_sam": sgd(aopt.AntiReg, lam=-0.05, max_norm=0.3, rule=rules.SAM(0.1)),
}
# the rules that need double backprop, which DDP cannot all-reduce: each must refuse under DDP
DOUBLE_BACKPROP = {
    "gam": sgd(aopt.GAM, rho=0.05, alpha=0.3),
    "gradnorm_db": sgd(aopt.GradNorm, gamma=0.3, mode="db"),
    "igr_db": sgd(aopt.IGR, h=0.2, mode="db"),
}


def closure_for(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def closure(create_graph=False):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward(create_graph=create_graph)
        return loss
    return closure


def train(model: nn.Module, factory, x, y, steps: int = STEPS):
    opt = factory(model.parameters(), model)
    losses = [float(opt.step(closure_for(model, opt, x, y))) for _ in range(steps)]
    return opt, losses


def rates(opt) -> tuple[float, float]:
    return getattr(opt, "r_clip", 0.0), getattr(opt, "r_proj", 0.0)


def split_closure(model, opt, x, y):
    """The DDP gradient of a BatchNorm model in one process: each half normalised with its own batch
    statistics, the mean of the two halves' losses; the running statistics are those of rank 0's half."""
    h = len(x) // 2

    def closure():  # one backward per half: BatchNorm's backward reads the buffers the other half changes
        opt.zero_grad()
        loss0 = F.mse_loss(model(x[:h]), y[:h]) / 2
        loss0.backward()
        with frozen_norm_stats(model):
            loss1 = F.mse_loss(model(x[h:]), y[h:]) / 2
            loss1.backward()
        return loss0 + loss1
    return closure


# ---------------------------------------------------------------------------------------------- DDP worker

def ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    x, y = data()
    xr, yr = x.chunk(world)[rank], y.chunk(world)[rank]
    result = {}
    for name, factory in RULES.items():
        ddp = DDP(mlp())
        opt, losses = train(ddp, factory, xr, yr)
        result[name] = ([p.detach() for p in ddp.module.parameters()], losses, rates(opt))
    ddp = DDP(mlp(bn=True))  # broadcast_buffers=True: rank 0's running statistics at every forward
    opt, losses = train(ddp, RULES["sam"], xr, yr)
    result["sam_bn"] = ([p.detach() for p in ddp.module.parameters()], losses, [b.clone() for b in ddp.module.buffers()])
    if hasattr(aopt.SAM, "first_step"):  # the two-call API of issue 13, when it exists
        ddp = DDP(mlp())
        opt = RULES["sam"](ddp.parameters(), ddp)
        for _ in range(STEPS):
            opt.zero_grad()
            F.mse_loss(ddp(xr), yr).backward()
            opt.first_step(zero_grad=True)
            F.mse_loss(ddp(xr), yr).backward()
            opt.second_step(zero_grad=True)
        result["sam_two_calls"] = ([p.detach() for p in ddp.module.parameters()], None, None)
    # gradients as views into DDP's buckets, which every backward rewrites: the wrapper must copy them
    ddp = DDP(mlp(), gradient_as_bucket_view=True)
    train(ddp, RULES["sam"], xr, yr)
    result["sam_bucket_view"] = ([p.detach() for p in ddp.module.parameters()], None, None)
    errors = {}
    for name, factory in DOUBLE_BACKPROP.items():
        ddp = DDP(mlp())
        before = [p.detach().clone() for p in ddp.module.parameters()]
        try:
            train(ddp, factory, xr, yr, steps=1)
        except ValueError as e:
            errors[name] = (str(e), all(torch.equal(a, b) for a, b in zip(before, ddp.module.parameters())))
    result["double_backprop_errors"] = errors
    torch.save(result, out)
    dist.destroy_process_group()


def test_ddp_two_processes_equal_single_process_full_batch(tmp_path):
    world = 2
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, __file__, str(r), str(world), str(store), str(tmp_path / f"r{r}.pt")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(world)]
    for p in procs:
        output, _ = p.communicate(timeout=120)
        assert p.returncode == 0, output
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt") for r in range(world))
    x, y = data()
    h = N // 2
    for name, factory in RULES.items():
        (p0, l0, c0), (p1, l1, c1) = r0[name], r1[name]
        for a, b in zip(p0, p1):  # replicas identical: every pass's gradient was all-reduced
            assert torch.equal(a, b), name
        ref = mlp()
        opt, ref_losses = train(ref, factory, x, y)
        for a, b in zip(p0, ref.parameters()):
            torch.testing.assert_close(a, b.detach(), rtol=1e-10, atol=1e-12, msg=name)
        # step() returns each rank's own loss at θ; their mean is the full-batch loss
        for a, b, full in zip(l0, l1, ref_losses):
            assert abs((a + b) / 2 - full) < 1e-12 * max(1.0, abs(full)), name
        assert c0 == c1 == rates(opt), name
    if "sam_two_calls" in r0:
        for a, b in zip(r0["sam_two_calls"][0], r0["sam"][0]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(r0["sam_bucket_view"][0], r0["sam"][0]):
        assert torch.equal(a, b)
    # double backprop: a clear error on every rank, before any parameter moved
    for r in (r0, r1):
        assert set(r["double_backprop_errors"]) == set(DOUBLE_BACKPROP)
        for name, (message, untouched) in r["double_backprop_errors"].items():
            assert "not available under DistributedDataParallel" in message and untouched, name

    # BatchNorm: parameters equal the one-process split-half gradient; the running statistics
    # change once per step, and DDP keeps rank 0's (rank 1's own update lasts until its next forward)
    ref = mlp(bn=True)
    opt = RULES["sam"](ref.parameters(), ref)
    for _ in range(STEPS):
        opt.step(split_closure(ref, opt, x, y))
    (p0, _, b0), (p1, _, b1) = r0["sam_bn"], r1["sam_bn"]
    for a, b, c in zip(p0, p1, ref.parameters()):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c.detach(), rtol=1e-10, atol=1e-12)
    for a, c in zip(b0, ref.buffers()):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-14)
    assert int(b0[-1]) == int(b1[-1]) == STEPS  # num_batches_tracked: once per step, not per pass
    assert not torch.equal(b0[0], b1[0])  # running_mean: rank 1 normalised its own half last


# ---------------------------------------------------------------------------------------------- Lightning

def test_lightning_automatic_optimization_equals_hand_loop(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data()
    calls = []

    class Module(L.LightningModule):
        def __init__(self, factory):
            super().__init__()
            self.net = mlp()
            self.factory = factory

        def training_step(self, batch, batch_idx):
            calls.append(batch_idx)  # runs once per closure call: twice per step for SAM
            xb, yb = batch
            return F.mse_loss(self.net(xb), yb)

        def configure_optimizers(self):
            opt = self.factory(self.parameters(), self)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    steps, bs = 6, 4  # 4 batches an epoch: crosses an epoch boundary
    for name in ["sam", "gsam", "antireg"]:
        module = Module(RULES[name])
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
        loader = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=False)
        calls.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no num_workers", "no validation"
            trainer.fit(module, loader)
        assert len(calls) == steps * (1 if name == "antireg" else 2)

        ref = mlp()
        opt = RULES[name](ref.parameters(), ref)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        batches = list(zip(x.split(bs), y.split(bs)))
        for i in range(steps):
            xb, yb = batches[i % len(batches)]
            opt.step(closure_for(ref, opt, xb, yb))
            sched.step()
        for a, b in zip(module.net.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
        assert trainer.optimizers[0].param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.1 * 0.5**3


def test_lightning_with_a_grad_scaler_fails_loudly():
    """Lightning's fp16 plugin (a GradScaler: CUDA; on CPU "16-mixed" becomes bf16 without one) runs
    the closure itself, then ``scaler.step(optimizer)`` without it: the wrapper refuses, it does not
    silently take one plain step. Use bf16, or manual optimization with ``opt.step(closure, scaler)``."""
    import lightning as L
    from lightning.pytorch.plugins.precision import MixedPrecision
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, batch_idx):
            return F.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return RULES["sam"](self.parameters(), self)

    x, y = data()
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))])
    with pytest.raises(ValueError, match="needs a closure"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Module(), DataLoader(TensorDataset(x, y), batch_size=8))


def test_lightning_automatic_optimization_refuses_double_backprop():
    """Lightning's closure ignores create_graph, so its backward leaves no graph to differentiate:
    GAM says so instead of stepping without the Hessian-vector products."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, batch_idx):
            return F.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return DOUBLE_BACKPROP["gam"](self.parameters(), self)

    x, y = data()
    module = Module()
    before = [p.detach().clone() for p in module.parameters()]
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="create_graph"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=8))
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


# ---------------------------------------------------------------------------------------------- accelerate

def test_accelerate_prepared_optimizer_passes_the_closure_through():
    from accelerate import Accelerator

    x, y = data()
    for name in ["sam", "antireg"]:
        accelerator = Accelerator(cpu=True)
        model = mlp()
        opt = RULES[name](model.parameters(), model)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        model, aopt_, sched = accelerator.prepare(model, opt, sched)
        assert type(aopt_).__name__ == "AcceleratedOptimizer" and aopt_.optimizer is opt
        seen = []

        def closure():
            aopt_.zero_grad()
            loss = F.mse_loss(model(x), y)
            accelerator.backward(loss)
            seen.append(loss.detach())
            return loss

        for _ in range(STEPS):
            assert aopt_.step(closure) is None  # AcceleratedOptimizer.step drops the loss: read it in the closure
            sched.step()

        ref = mlp()
        ref_opt, ref_losses = RULES[name](ref.parameters(), ref), []
        ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=1, gamma=0.5)
        for _ in range(STEPS):
            ref_losses.append(float(ref_opt.step(closure_for(ref, ref_opt, x, y))))
            ref_sched.step()
        passes = 1 if name == "antireg" else 2
        assert [float(v) for v in seen[::passes]] == ref_losses
        for a, b in zip(accelerator.unwrap_model(model).parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
        assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"] == 0.1 * 0.5**STEPS


def test_accelerate_grad_scaler_through_the_wrapper():
    """With a GradScaler (accelerate's fp16 on CUDA), ``AcceleratedOptimizer.step(closure)`` hands the
    closure to ``scaler.step``, which unscales before the closure has run; the wrapper's own
    ``step(closure, scaler)`` (``opt.optimizer``) is exact: same parameters as without a scaler."""
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer

    Accelerator(cpu=True)  # the shared state AcceleratedOptimizer reads
    x, y = data()
    model, ref = mlp(), mlp()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    accelerated = AcceleratedOptimizer(RULES["antireg_sam"](model.parameters(), model), device_placement=False,
                                       scaler=scaler)

    def closure():
        accelerated.zero_grad()
        scaled = scaler.scale(F.mse_loss(model(x), y))
        scaled.backward()  # what accelerator.backward does with a scaler
        return scaled

    ref_opt = RULES["antireg_sam"](ref.parameters(), ref)
    for _ in range(STEPS):
        loss = accelerated.optimizer.step(closure, scaler)
        assert float(loss) == float(ref_opt.step(closure_for(ref, ref_opt, x, y)))  # the true loss
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert accelerated.optimizer.r_clip == ref_opt.r_clip


# ---------------------------------------------------------------------------------------------- torch.compile

def test_torch_compile_equals_eager():
    """aot_eager: Dynamo capture and AOTAutograd's forward/backward graphs, without inductor's C++ build
    (inductor works here too, but compiling its kernels costs about 35 s on a cold cache)."""
    x, y = data()
    for name in ["sam", "antireg_sam"]:
        eager, base = mlp(), mlp()
        compiled = torch.compile(base, backend="aot_eager", fullgraph=True)
        _, l_eager = train(eager, RULES[name], x, y)
        _, l_comp = train(compiled, RULES[name], x, y)
        assert all(abs(a - b) < 1e-12 for a, b in zip(l_comp, l_eager)), name
        for a, b in zip(base.parameters(), eager.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


if __name__ == "__main__":
    ddp_worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
