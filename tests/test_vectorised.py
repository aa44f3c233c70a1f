"""Vectorised training: per-model results equal the sequential reference, safeguards and
divergence per model, identical run directories, grouping and fallback of the relatives."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from antireg.data import default_data_dir
from antireg.experiments import ExperimentCfg, expand, run_sweep
from antireg.experiments.runner import group_key, prepare, sweep_settings, train_group, train_run
from antireg.experiments.sweep import make_tasks
from antireg.rules import make_rule
from antireg.vectorised import StackedStep, fit_stacked

DATA = default_data_dir()
REG = {
    "experiment": "vec_reg",
    "dataset": {"name": "diabetes"},
    "fractions": [0.3],
    "seeds": [0, 1],
    "model": {"kind": "mlp", "width": 16, "depth": 1},
    "optimizers": {"sgd": {"lr": 0.05, "momentum": 0.9}, "adam": {"lr": 0.01}},
    "training": {"epochs": 12, "batch_size": 32},
    # a tight clip and trust region, and a strong λ₀, so that both safeguards fire
    "ar": {"lambda0": [0.01, 3.0]},
    "safeguards": {"grad_clip": 0.5, "trust_factor": 0.5},
    "ablations": ["none", "no_grad_clip", "no_trust_region"],
}
# full batch, λ₀ = 1000 far past any safe bound: the AR run without safeguards diverges,
# the one with a trust region (same batched model) is projected back every step
DIVERGING = {**REG, "experiment": "vec_div", "optimizers": {"sgd": {"lr": 0.1, "momentum": 0.9}},
             "training": {"epochs": 12, "batch_size": None}, "ar": {"lambda0": [0.01, 1000.0]},
             "safeguards": {"grad_clip": None, "trust_factor": 0.5}, "ablations": ["none", "no_trust_region"]}  # fmt: skip
CLS = {
    "experiment": "vec_cls",
    "dataset": {"name": "digits"},
    "fractions": [0.1],
    "seeds": [0, 1],
    "model": {"kind": "mlp", "width": 16, "depth": 1},
    "optimizers": {"adam": {"lr": 0.01}},
    "training": {"epochs": 6, "batch_size": 64},
    "ar": {"lambda0": [0.01, 10.0], "decay": [0.5], "center": "init", "ntk": True},  # λ₀ = 10 is clamped
    "safeguards": {"grad_clip": 1.0, "trust_factor": 0.3},
    "ablations": ["none"],
}


# a CNN: trained under vmap over functional_call (MLPs use batched products)
CNN = {**CLS, "experiment": "vec_cnn", "model": {"kind": "cnn", "width": 8, "depth": 1}, "ar": {"lambda0": [0.01]},
       "training": {"epochs": 3, "batch_size": 64}}  # fmt: skip


def _specs(raw: dict, **changes):
    cfg = ExperimentCfg.model_validate({**raw, **changes})
    n = {"diabetes": 442, "digits": 1797}[cfg.dataset.name]
    return expand(cfg, n)


def _groups(specs) -> list[list]:
    groups: dict[str, list] = {}
    for s in specs:
        groups.setdefault(group_key(s), []).append(s)
    return list(groups.values())


def _assert_close(a, b, rtol=1e-5):
    """Equal up to rtol for floats (NaN equal to NaN), exactly otherwise; wall time aside."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            if k != "wall_s":
                _assert_close(a[k], b[k], rtol)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_close(x, y, rtol)
    elif isinstance(a, np.ndarray):  # model outputs: relative to their norm (ρ's measure), so
        # one output that cancels to near zero is not held to a relative bound of its own
        assert np.linalg.norm(a - b) <= rtol * np.linalg.norm(a)
    elif isinstance(a, float) and not isinstance(b, bool):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rtol, abs=1e-9), (a, b)
    else:
        assert a == b


def _both(specs):
    with sweep_settings():
        sequential = [train_run(s, DATA) for s in specs]
        vectorised = [out for group in _groups(specs) for out in train_group(group, DATA)]
    order = [s for group in _groups(specs) for s in group]
    return dict(zip([s.run_id for s in specs], sequential)), dict(zip([s.run_id for s in order], vectorised))


@pytest.mark.parametrize("raw", [REG, DIVERGING, CLS, CNN],
                         ids=["regression-minibatch", "full-batch-diverging", "classification", "cnn"])
def test_vectorised_equals_sequential_per_model(raw):
    specs = _specs(raw)
    sequential, vectorised = _both(specs)
    for run_id, (metrics, history, artefacts) in sequential.items():
        _assert_close(metrics, vectorised[run_id][0])
        _assert_close(artefacts, vectorised[run_id][2])
        # a blow-up multiplies rounding differences with the losses (1e7 and up before the
        # inf): the log of a diverged run holds to 1e-4, its metrics (best epoch) to 1e-5
        _assert_close(history, vectorised[run_id][1], rtol=1e-4 if metrics["diverged"] else 1e-5)
    metrics = pd.DataFrame([m for m, _, _ in sequential.values()])
    if raw is REG:  # both optimizers; both safeguards fired, on some steps and not others
        assert set(metrics["optimizer"]) == {"sgd", "adam"}
        assert ((metrics["r_clip"] > 0) & (metrics["r_clip"] < 1)).any()
        assert ((metrics["r_proj"] > 0) & (metrics["r_proj"] < 1)).any()
    if raw is DIVERGING:  # divergence is per model: the baseline stops, the guarded runs go on
        strong = metrics[metrics["lambda0"] == -1000.0]
        assert strong.loc[strong["ablation"] == "no_trust_region", "diverged"].all()
        assert not strong.loc[strong["ablation"] == "none", "diverged"].any()
        assert (strong.loc[strong["ablation"] == "none", "r_proj"] == 1.0).all()
        assert (metrics.loc[~metrics["diverged"], "steps"] == 12).all()
    if raw is CLS:
        assert metrics["clamped"].any() and "test_ece" in metrics


def test_mlp_products_equal_the_generic_vmap_path_bit_for_bit():
    """The batched-product forward of MLPs is a shortcut, not a different computation."""
    specs = _groups(_specs(REG))[0][:5]
    with sweep_settings():
        direct, wrapped = ([prepare(s, DATA) for s in specs] for _ in range(2))
        for run in wrapped:  # the same parameters inside a container: not a plain MLP, so vmap runs it
            run.model = torch.nn.Sequential(run.model)
        fits = [fit_stacked([r.model for r in runs], [r.step for r in runs], runs[0].loss_fn, [r.train for r in runs],
                            [r.val for r in runs], 4, 32, [r.generator() for r in runs]) for runs in (direct, wrapped)]  # fmt: skip
    assert [json.dumps(r.history) for r in fits[0]] == [json.dumps(r.history) for r in fits[1]]
    for a, b in zip(direct, wrapped):
        assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_tasks_group_by_key_and_leave_the_relatives_to_the_sequential_path():
    stacked = _specs(REG, relatives={"sam": {"rho": [0.05]}})
    assert all(t.vectorised for t in make_tasks(stacked, {s.run_id for s in stacked}, vectorise=True))
    specs = _specs(REG, relatives={"gr_db": {"gamma": [0.05]}})  # a relative that does not stack
    every = {s.run_id for s in specs}
    tasks = make_tasks(specs, every, vectorise=True)
    gr = [t for t in tasks if t.specs[0].rule == "gr_db"]
    assert gr and all(len(t.specs) == 1 and not t.vectorised for t in gr)
    batched = [t for t in tasks if t.vectorised]
    assert len(batched) == 2  # sgd and adam: different optimizers never share a batched model
    assert all(len({group_key(s) for s in t.specs}) == 1 for t in batched)
    assert sorted(s.run_id for t in tasks for s in t.specs) == sorted(every)
    small = make_tasks(specs, every, True, max_group=5)
    assert sorted(len(t.specs) for t in small) == [1, 1, 1, 1, 4, 4, 5, 5, 5, 5]
    # largest first (n_train × epochs summed over the task's runs), for the pool's load balance
    work = [sum(s.n_train * s.training.epochs for s in t.specs) for t in small]
    assert work == sorted(work, reverse=True) and work[0] > work[-1]
    # resume: a batch with one missing run is the same whole batch; finished batches drop out
    missing = batched[1].specs[3].run_id
    assert make_tasks(specs, {missing}, vectorise=True) == [batched[1]]
    assert make_tasks(specs, {missing}) == [(batched[1].specs[3:4], False)]


def test_unsupported_steps_are_refused_with_the_reason():
    spec = _specs(REG)[0]
    run = prepare(spec, DATA)
    run.step.rule = make_rule("gr_db", gamma=0.05)
    with pytest.raises(ValueError, match="GR or IGR by double backpropagation"):
        StackedStep([run.model], [run.step], run.loss_fn)
    run.step.rule = make_rule("igr", lr=0.1)  # mode "db" by default
    with pytest.raises(ValueError, match="GR or IGR by double backpropagation"):
        StackedStep([run.model], [run.step], run.loss_fn)
    run.step.rule = make_rule("gam", rho=0.05, alpha=0.1)
    with pytest.raises(ValueError, match="only erm, flooding, sam, asam, gsam, gr, gr_fd_forward, gr_fd_backward, igr are"):
        StackedStep([run.model], [run.step], run.loss_fn)
    run.step.rule = make_rule("flooding", b=0.05, per_example=True)
    with pytest.raises(ValueError, match="per-example flooding"):
        StackedStep([run.model], [run.step], run.loss_fn)
    run = prepare(spec, DATA)
    run.step.optimizer = torch.optim.RMSprop(run.model.parameters())
    with pytest.raises(ValueError, match="only SGD and Adam"):
        StackedStep([run.model], [run.step], run.loss_fn)
    with pytest.raises(ValueError, match="one group_key"):
        train_group(_specs(REG)[:1] + _specs(REG, fractions=[0.5])[:1], DATA)


def test_vectorised_sweep_writes_the_same_run_directories(tmp_path):
    cfg = ExperimentCfg.model_validate({**REG, "relatives": {"flooding": {"b": 0.1}}})
    seq = run_sweep(cfg, tmp_path / "seq", progress=False)
    vec = run_sweep(cfg, tmp_path / "vec", progress=False, vectorise=True)
    assert sorted(seq.runs["run_id"]) == sorted(vec.runs["run_id"])
    for run_id in seq.runs["run_id"]:
        a, b = tmp_path / "seq" / "experiments" / run_id, tmp_path / "vec" / "experiments" / run_id
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        assert (a / "config.json").read_text() == (b / "config.json").read_text()
        _assert_close(json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text()))
        pd.testing.assert_frame_equal(pd.read_csv(a / "log.csv"), pd.read_csv(b / "log.csv"), rtol=1e-5)
    # aggregation reads them the same way
    cols = ["method", "ablation", "optimizer", "lambda0", "n_seeds", "n_diverged"]
    pd.testing.assert_frame_equal(seq.summary[cols], vec.summary[cols])


def test_finiteness_is_per_model_and_exact_past_float32_overflow():
    """A row of finite parameters whose float32 sum overflows is finite; an inf or a NaN
    anywhere in a row makes that row, and only it, non-finite (numpy's isfinite the oracle)."""
    specs = _groups(_specs(REG))[0][:4]
    runs = [prepare(s, DATA) for s in specs]
    stacked = StackedStep([r.model for r in runs], [r.step for r in runs], runs[0].loss_fn)
    with torch.no_grad():
        stacked.flat[0] = 3e38  # finite, but the float32 row sum is inf
        stacked.flat[1, 5] = math.inf
        stacked.flat[2, -1] = math.nan
    want = np.isfinite(stacked.flat.detach().numpy()).all(1)
    assert want.tolist() == [True, False, False, True]
    assert stacked.finite().tolist() == want.tolist()


def test_stackable_names_only_rules_the_stacked_step_trains():
    from antireg.rules import RULES
    from antireg.vectorised import STACKED_RULES, stackable

    assert stackable("erm") and stackable("sam") and not stackable("gr_db") and not stackable("no_such_rule")
    # GR and IGR only by finite differences: the mode from the name, the parameters or the default (db)
    assert stackable("gr_fd_forward") and not stackable("gr") and stackable("gr", {"mode": "fd_backward"})
    assert not stackable("igr") and not stackable("igr", {"mode": "db"}) and stackable("igr", {"mode": "fd_forward"})
    assert all(getattr(RULES[name], "func", RULES[name]) is rule for name, rule in STACKED_RULES.items())


def test_stacked_fit_follows_the_same_protocol_options():
    """fit_stacked is fit's loop with a stacked step: with replacement sampling, a step
    budget and the last state kept, each model ends where its own fit leaves it."""
    from antireg.models import flatten_parameters, make_model
    from antireg.penalty import ProximityPenalty
    from antireg.safeguards import GradClip
    from antireg.step import TrainStep
    from antireg.train import fit, squared_error

    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64))
            for _ in range(3)]

    def runs():
        out = []
        for i, lam in enumerate([0.0, -0.05, 0.1]):
            torch.manual_seed(i)
            model = make_model("mlp", 3, width=8, depth=1).double()
            flatten_parameters(model)
            p = list(model.parameters())
            step = TrainStep(model, torch.optim.SGD(p, lr=0.05), clip=GradClip(p, 0.5) if i else None,
                             penalty=ProximityPenalty(p, lam, "init") if lam else None)
            out.append((model, step))
        return out

    protocol = dict(replacement=True, max_steps=8, keep="last")
    singles = runs()
    for (model, step), d in zip(singles, data):
        fit(model, step, squared_error, d, d, 4, 16, torch.Generator().manual_seed(1), **protocol)
    stacked = runs()
    results = fit_stacked([m for m, _ in stacked], [s for _, s in stacked], squared_error, data, data, 4, 16,
                          [torch.Generator().manual_seed(1) for _ in data], **protocol)
    assert [r.steps for r in results] == [8] * 3 and [h["steps"] for h in results[0].history] == [3, 3, 2]
    for (a, sa), (b, sb) in zip(singles, stacked):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
        if sa.clip:
            assert (sa.clip.steps, sa.clip.events) == (sb.clip.steps, sb.clip.events)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_relatives_stacked_equal_their_own_train_steps(optimizer):
    """SAM, ASAM, GSAM, flooding and GR's and IGR's finite differences (with an ERM and an AR model in the
    same stack) train stacked to what each one's own TrainStep gives, in float64, minibatches,
    clip and trust region on."""
    from antireg.models import flatten_parameters, make_model
    from antireg.penalty import ProximityPenalty
    from antireg.safeguards import GradClip, TrustRegion
    from antireg.step import TrainStep
    from antireg.train import fit, squared_error
    from antireg.vectorised import stackable

    rules = [("erm", {}), ("erm", {}), ("sam", {"rho": 0.05}), ("sam", {"rho": 0.2}), ("asam", {"rho": 0.5}),
             ("gsam", {"rho": 0.1, "alpha": 0.3}), ("flooding", {"b": 0.45}),
             ("gr_fd_forward", {"gamma": 0.05, "eps": 0.01}), ("gr_fd_backward", {"gamma": 0.05, "eps": 0.01}),
             ("igr", {"lr": 0.2, "mode": "fd_forward", "eps": 0.02})]
    assert all(stackable(name, params) for name, params in rules)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64))
            for _ in rules]

    def runs():
        out = []
        for i, (name, params) in enumerate(rules):
            torch.manual_seed(i)
            model = make_model("mlp", 3, width=8, depth=2).double()
            flatten_parameters(model)
            p = list(model.parameters())
            opt = torch.optim.SGD(p, lr=0.1, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam(p, lr=0.02)
            out.append((model, TrainStep(model, opt, make_rule(name, **params),
                                         penalty=ProximityPenalty(p, -0.05, "init") if i == 1 else None,
                                         clip=GradClip(p, 1.0) if i % 2 else None,
                                         trust_region=TrustRegion(p, factor=0.3) if i > 2 else None)))
        return out

    singles = runs()
    want = [fit(m, s, squared_error, d, d, 6, 16, torch.Generator().manual_seed(i))
            for i, ((m, s), d) in enumerate(zip(singles, data))]
    stacked = runs()
    got = fit_stacked([m for m, _ in stacked], [s for _, s in stacked], squared_error, data, data, 6, 16,
                      [torch.Generator().manual_seed(i) for i in range(len(rules))])
    for (a, sa), (b, sb), w, r in zip(singles, stacked, want, got):
        assert (w.steps, w.best_epoch) == (r.steps, r.best_epoch)
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
        for guard in ("clip", "trust_region"):
            if getattr(sa, guard):
                assert (getattr(sa, guard).steps, getattr(sa, guard).events) == \
                       (getattr(sb, guard).steps, getattr(sb, guard).events)
    assert any(s.trust_region.events for _, s in singles if s.trust_region)
    flood = [h["train_loss"] for h in want[-3].history]
    assert min(flood) < 0.45 < max(flood), flood  # flooding both descended and ascended
