import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from antireg import spectral
from antireg.safeguards import GradClip, TrustRegion, global_norm, spectral_clamp


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, generator=g, requires_grad=True), torch.randn(3, generator=g, requires_grad=True)]


@given(scale=st.floats(1e-3, 1e3), max_norm=st.floats(1e-2, 1e2), seed=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_clip_bounds_the_norm_keeps_direction_and_counts(scale, max_norm, seed):
    params = _params(seed)
    for p in params:
        p.grad = torch.randn_like(p) * scale
    before = torch.cat([p.grad.flatten() for p in params])
    clip = GradClip(params, max_norm)
    fired = clip()
    after = torch.cat([p.grad.flatten() for p in params])
    assert fired == (before.norm() > max_norm)
    assert clip.events == int(fired) and clip.steps == 1
    assert after.norm() <= max_norm * (1 + 1e-5)
    if not fired:
        assert torch.equal(before, after)
    else:  # same direction
        assert torch.allclose(after / after.norm(), before / before.norm(), atol=1e-5)


def test_clip_rate_is_exact_fraction_of_steps():
    params = _params()
    clip = GradClip(params, 1.0)
    pattern = [0.1, 5.0, 0.2, 7.0, 9.0]  # norms relative: fires on 3 of 5
    for s in pattern:
        for p in params:
            p.grad = torch.zeros_like(p)
        params[1].grad[0] = s
        clip()
    assert clip.rate == 3 / 5


@given(radius=st.floats(0.1, 10), shift=st.floats(0, 20), seed=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_projection_keeps_distance_at_most_radius(radius, shift, seed):
    assume(abs(shift - radius) > 1e-5 * radius)  # float rounding decides exact ties
    params = _params(seed)
    tr = TrustRegion(params, radius=radius)
    ref = [p.detach().clone() for p in params]
    g = torch.Generator().manual_seed(seed + 1)
    direction = [torch.randn(p.shape, generator=g) for p in params]
    norm = float(global_norm(direction))
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(d * shift / norm)
    fired = tr()
    dist = float(global_norm([p.detach() - r for p, r in zip(params, ref)]))
    assert fired == (shift > radius)
    assert dist <= radius * (1 + 1e-5)
    if fired:  # projected onto the sphere, along the same ray
        assert dist == pytest.approx(radius, rel=1e-5)
        moved = torch.cat([(p.detach() - r).flatten() for p, r in zip(params, ref)])
        want = torch.cat([d.flatten() for d in direction])
        assert torch.allclose(moved / moved.norm(), want / want.norm(), atol=1e-5)


def test_projection_counts_exactly_and_factor_sets_radius():
    params = _params()
    tr = TrustRegion(params, factor=0.5)
    assert tr.radius == pytest.approx(0.5 * float(global_norm([p.detach() for p in params])))
    steps = [0.0, 10.0, 0.0, 10.0]
    for s in steps:
        with torch.no_grad():
            params[0][0, 0] += s
        tr()
    assert (tr.events, tr.steps) == (2, 4)


def test_trust_region_needs_positive_radius():
    with pytest.raises(ValueError):
        TrustRegion(_params(), radius=0.0)
    with pytest.raises(ValueError):
        TrustRegion(_params())
    with pytest.raises(ValueError):
        GradClip(_params(), 0.0)


def test_spectral_clamp_at_the_bound():
    eigs = np.array([9.0, 4.0, 2.0])
    n = 20
    bound = -(1 - 0.1) * 2.0 / n
    lam, clamped = spectral_clamp(-1.0, eigs, n, eta=0.1)
    assert clamped and lam == pytest.approx(bound)
    lam, clamped = spectral_clamp(0.5 * bound, eigs, n, eta=0.1)
    assert not clamped and lam == pytest.approx(0.5 * bound)
    lam, clamped = spectral_clamp(3.0, eigs, n)
    assert not clamped and lam == 3.0
    # the clamped Hessian eigenvalues μ/n + λ stay positive
    assert (eigs / n + spectral_clamp(-1e6, eigs, n)[0] > 0).all()
    assert spectral.safe_alpha_min(eigs, 0.1) / n == pytest.approx(bound)


def test_flat_and_per_tensor_trust_region_agree():
    from antireg.models import flatten_parameters

    flat_params = _params(3)
    module = torch.nn.Module()
    for i, p in enumerate(flat_params):
        module.register_parameter(f"p{i}", torch.nn.Parameter(p.detach().clone()))
    flatten_parameters(module)
    flat_params = list(module.parameters())
    loose = [torch.nn.Parameter(p.detach().clone()) for p in flat_params]
    a, b = TrustRegion(flat_params, radius=0.5), TrustRegion(loose, radius=0.5)
    assert a._flat is not None and b._flat is None
    for step in range(5):
        with torch.no_grad():
            for p, q in zip(flat_params, loose):
                delta = torch.full_like(p, 0.1 * (step + 1))
                p.add_(delta)
                q.add_(delta)
        assert a() == b()
        for p, q in zip(flat_params, loose):
            torch.testing.assert_close(p, q)
    assert a.events == b.events > 0
    # restoring a saved reference keeps the fast path consistent
    a.ref = [r + 1 for r in a.ref]
    torch.testing.assert_close(a._flat_ref, torch.cat([r.reshape(-1) for r in a.ref]))


def _ar_step(model, shared: bool):
    from antireg.penalty import ProximityPenalty
    from antireg.step import TrainStep

    params = list(model.parameters())
    penalty = ProximityPenalty(params, -0.5, "init")
    tr = TrustRegion(params, factor=0.02, ref=penalty.center if shared else None)
    return TrainStep(model, torch.optim.SGD(params, lr=0.1), penalty=penalty, trust_region=tr)


def test_one_copy_of_theta0_serves_penalty_and_trust_region():
    """AR keeps θ₀ once: the trust region's flat reference is the penalty centre's storage,
    whichever of the two is built first, and a restored state keeps them shared."""
    from antireg.models import flatten_parameters, make_model
    from antireg.penalty import ProximityPenalty

    model = make_model("mlp", 3, 1, width=8, depth=2).double()
    flatten_parameters(model)  # .double() gives each parameter its own storage again
    params = list(model.parameters())
    pen = ProximityPenalty(params, -0.5, "init")
    tr = TrustRegion(params, factor=1.0, ref=pen.center)
    storage = pen.center[0].untyped_storage().data_ptr()
    assert storage != params[0].untyped_storage().data_ptr()  # a copy of θ₀, not θ itself
    assert tr._flat_ref.data_ptr() == storage
    assert {t.untyped_storage().data_ptr() for t in pen.center + tr.ref} == {storage}
    tr2 = TrustRegion(params, factor=1.0)
    pen2 = ProximityPenalty(params, -0.5, center=tr2.ref)
    assert {t.untyped_storage().data_ptr() for t in pen2.center} == {tr2._flat_ref.untyped_storage().data_ptr()}
    # restoring a saved state writes into the shared copy
    saved = [p.detach() + 1 for p in params]
    pen.center = saved
    tr.ref = saved
    assert tr._flat_ref.data_ptr() == storage
    torch.testing.assert_close(tr.ref[0], params[0].detach() + 1, rtol=0, atol=0)


def test_shared_theta0_trains_bit_identically_to_two_copies():
    from antireg.models import flatten_parameters, make_model

    def run(shared):
        torch.manual_seed(0)
        model = make_model("mlp", 3, 1, width=8, depth=2).double()
        flatten_parameters(model)
        step = _ar_step(model, shared)
        g = torch.Generator().manual_seed(1)
        X, y = torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randn(20, generator=g, dtype=torch.float64)
        projected = sum(step(lambda: (model(X).squeeze(1) - y) ** 2).projected for _ in range(30))
        return torch.cat([p.detach().flatten() for p in model.parameters()]), projected

    (a, fired_a), (b, fired_b) = run(True), run(False)
    assert fired_a == fired_b > 0
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_stacked_stages_round_as_each_models_own_stages():
    """The penalty, clip and projection of M stacked models (rows of one (M, P) tensor)
    give each model bit for bit what its own single-model stages give it; a model with a
    stage off (λ = 0, G = R = ∞) is left untouched."""
    from antireg.models import flatten_parameters
    from antireg.penalty import ProximityPenalty

    g = torch.Generator().manual_seed(5)
    shapes = [(7, 3), (7,), (1, 7), (1,)]
    blocks = [math.prod(s) for s in shapes]
    lam, max_norm, radius = [-0.3, 0.7, 0.0], [0.5, 1e3, math.inf], [0.4, 50.0, math.inf]
    singles, rows, grads = [], [], []
    for i in range(3):
        module = torch.nn.Module()
        for j, s in enumerate(shapes):
            module.register_parameter(f"p{j}", torch.nn.Parameter(torch.randn(s, generator=g)))
        flatten_parameters(module)
        params = list(module.parameters())
        center = [p.detach() + 0.1 * torch.randn(p.shape, generator=g) for p in params]
        with torch.no_grad():  # move away from θ₀ so that the trust region fires for model 0
            for p in params:
                p.add_(torch.randn(p.shape, generator=g))
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * (i + 1)
        rows.append(torch.cat([p.detach().flatten() for p in params]))
        grads.append(torch.cat([p.grad.flatten() for p in params]))
        stages = [ProximityPenalty(params, lam[i], center) if lam[i] else None,
                  GradClip(params, max_norm[i]) if max_norm[i] < math.inf else None,
                  TrustRegion(params, radius[i], ref=center) if radius[i] < math.inf else None]
        singles.append((params, center, stages))
    flat = torch.stack(rows).requires_grad_()
    flat.grad = torch.stack(grads)
    centers = torch.stack([torch.cat([c.flatten() for c in center]) for _, center, _ in singles])
    stacked = [ProximityPenalty([flat], lam, [centers], blocks=blocks), GradClip([flat], max_norm, blocks=blocks)]
    stacked[0]()
    clipped = stacked[1]()
    with torch.no_grad():
        flat -= 0.1 * flat.grad
    projected = TrustRegion([flat], radius, ref=[centers], blocks=blocks)()
    for i, (params, _, (pen, clip, tr)) in enumerate(singles):
        if pen:
            pen()
        assert bool(clipped[i]) == (clip() if clip else False)
        with torch.no_grad():
            for p in params:
                p -= 0.1 * p.grad
        assert bool(projected[i]) == (tr() if tr else False)
        torch.testing.assert_close(flat.grad[i], torch.cat([p.grad.flatten() for p in params]), rtol=0, atol=0)
        torch.testing.assert_close(flat[i].detach(), torch.cat([p.detach().flatten() for p in params]), rtol=0, atol=0)
    assert clipped.tolist() == [True, False, False] and projected.tolist() == [True, False, False]


def test_each_stage_saves_and_restores_what_training_changes():
    from antireg.penalty import ProximityPenalty

    params = _params(4)
    for p in params:
        p.grad = torch.randn_like(p) * 10
    clip, tr, pen = GradClip(params, 1.0), TrustRegion(params, radius=0.1), ProximityPenalty(params, -0.1, "init")
    clip()
    with torch.no_grad():
        params[0].add_(1.0)
    tr()
    fresh = _params(5)  # another θ₀: θ_ref, θ_c and R must come from the saved state
    clip2, tr2, pen2 = GradClip(fresh, 1.0), TrustRegion(fresh, radius=7.0), ProximityPenalty(fresh, -0.1, "init")
    for old, new in ((clip, clip2), (tr, tr2), (pen, pen2)):
        new.load_state_dict(old.state_dict())
    assert (clip2.steps, clip2.events, clip2.last_norm) == (1, 1, clip.last_norm)
    assert (tr2.steps, tr2.events, tr2.radius) == (1, 1, 0.1)
    for a, b, c, d in zip(tr.ref, tr2.ref, pen.center, pen2.center):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(c, d, rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [7, 1 << 16])  # several chunks (the last one short), or one
def test_trust_region_distance_in_chunks_and_projection_in_place(monkeypatch, chunk):
    """The flat path's distance, in column chunks through a bounded buffer, equals a float64
    oracle, and with one chunk the norm of θ − θ_ref bit for bit (the former arithmetic); the
    rows that fire are projected in place exactly as θ_ref + (θ − θ_ref)·R/d, the others untouched."""
    from antireg import safeguards

    monkeypatch.setattr(safeguards, "DISTANCE_CHUNK", chunk)
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(4, 30, generator=g)
    rows = ref + torch.randn(4, 30, generator=g) * torch.tensor([[0.1], [3.0], [0.2], [5.0]])
    dist = safeguards.row_distances(rows, ref)
    oracle = np.linalg.norm(rows.double().numpy() - ref.double().numpy(), axis=1, keepdims=True)
    np.testing.assert_allclose(dist.numpy(), oracle, rtol=1e-6)
    if chunk > 30:
        assert torch.equal(dist, torch.linalg.vector_norm(rows - ref, dim=1, keepdim=True))
    radius = [2.0, 2.0, math.inf, 2.0]
    want = rows.clone()
    scale = safeguards.ratio(torch.tensor(radius, dtype=torch.float64)[:, None], dist, 0.0)
    want[[1, 3]] = ((rows - ref) * scale)[[1, 3]] + ref[[1, 3]]
    flat = rows.clone().requires_grad_()
    fired = TrustRegion([flat], radius, ref=[ref], blocks=[30])()
    assert fired.tolist() == [False, True, False, True]
    assert torch.equal(flat.detach(), want)
    np.testing.assert_allclose(safeguards.row_distances(flat.detach(), ref)[[1, 3]].numpy(), 2.0, rtol=1e-6)


@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_trust_region_keeps_one_scratch_buffer_and_the_same_bits(monkeypatch, chunk):
    """A single model's check works in one buffer kept across steps (no allocation per step);
    the distance through it is the buffer-free distance bit for bit, in chunks or in one."""
    from antireg import safeguards

    monkeypatch.setattr(safeguards, "DISTANCE_CHUNK", chunk)
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(1, 30, generator=g)
    rows = ref + 0.1 * torch.randn(1, 30, generator=g)
    buffer = safeguards.distance_buffer(rows)
    assert buffer.shape == (1, min(30, chunk))
    assert torch.equal(safeguards.row_distances(rows, ref, buffer), safeguards.row_distances(rows, ref))
    flat = torch.nn.Parameter(rows[0].clone())
    region = TrustRegion([flat], radius=0.05, ref=[ref[0]])
    pointers = set()
    for _ in range(3):
        with torch.no_grad():
            flat.add_(0.1)
        assert region()  # fires: projected back to R
        pointers.add(region._buffer.data_ptr())
        np.testing.assert_allclose(float(torch.linalg.vector_norm(flat.detach() - ref[0])), 0.05, rtol=1e-5)
    assert len(pointers) == 1

