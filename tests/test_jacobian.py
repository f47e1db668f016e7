"""jacobian_svd and the null-space projection against a dense oracle on a tiny attention UNet."""

from __future__ import annotations

import time

import pytest
import torch

from locobank.loco.jacobian import (Linearization, block_subspace_svd, block_width, iteration_cap, jacobian_svd, math_attention,
                                    max_principal_angle, project_out)
from locobank.loco import linearization
from locobank.loco.linearization import jvp_mode, resolve_jvp_mode, resolve_vjp_mode, vjp_mode
from tiny import tiny_unet


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(1)
    unet = tiny_unet(8)
    # The PMP at t=600 has the same Jacobian structure as the model: fn is any differentiable map.
    fn = lambda z: unet(z[None], torch.tensor([600])).sample[0]  # noqa: E731
    x = torch.randn(3, 8, 8)
    with math_attention():
        J = torch.autograd.functional.jacobian(fn, x).reshape(192, 192)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, 2:5, 3:7] = True
    return fn, x, J, mask


def _dense_masked(J, mask):
    if mask is None:
        return J
    return J * mask.expand(3, 8, 8).reshape(-1, 1).float()


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.slow
def test_jacobian_svd_matches_dense_oracle(problem, masked):
    fn, x, J, mask = problem
    m = mask if masked else None
    _, S0, Vh0 = torch.linalg.svd(_dense_masked(J, m))
    U, S, Vh = jacobian_svd(fn, x, 3, mask=m, tol=1e-4, iters=100)
    assert Vh.shape == (3, 192)
    assert max_principal_angle(Vh0[:3], Vh) < 1e-2
    torch.testing.assert_close(S, S0[:3], rtol=1e-3, atol=1e-5)
    assert torch.all(S[:-1] >= S[1:])
    torch.testing.assert_close(Vh.norm(dim=1), torch.ones(3), rtol=1e-5, atol=1e-5)
    # U is the left singular vector: J_M v = s u.
    Jm = _dense_masked(J, m)
    for i in range(3):
        torch.testing.assert_close(Jm @ Vh[i], S[i] * U[i].reshape(-1), rtol=1e-2, atol=1e-3)


def test_masked_left_vectors_vanish_outside_mask(problem):
    fn, x, _, mask = problem
    U, _, _ = jacobian_svd(fn, x, 2, mask=mask, tol=1e-4)
    assert U[:, ~mask.expand(3, 8, 8)].abs().max() < 1e-12


@pytest.mark.slow
def test_convergence_is_judged_by_subspace_angle(problem):
    fn, x, _, mask = problem
    lin = Linearization(fn, x)
    (res,) = block_subspace_svd(lin, [mask], [3], tol=1e-3, iters=200)
    assert res.converged
    assert res.angle < 1e-3
    assert res.history[-1] == res.angle
    (loose,) = block_subspace_svd(lin, [mask], [3], tol=1e-1, iters=200)
    assert loose.iterations < res.iterations


@pytest.mark.slow
def test_chunking_gives_the_same_answer(problem):
    fn, x, _, mask = problem
    # Same seed and iteration count: chunking only changes how tangents are batched, not the maths.
    _, S1, V1 = jacobian_svd(fn, x, 3, mask=mask, chunk=2, tol=0.0, iters=8)
    _, S2, V2 = jacobian_svd(fn, x, 3, mask=mask, chunk=64, tol=0.0, iters=8)
    assert max_principal_angle(V1, V2) < 1e-4
    torch.testing.assert_close(S1, S2, rtol=1e-5, atol=1e-6)


def test_two_blocks_share_one_linearisation_and_match_separate_runs(problem):
    fn, x, J, mask = problem
    inside = mask.expand(3, 8, 8)
    lin = Linearization(fn, x)
    a, b = block_subspace_svd(lin, [inside, ~inside], [3, 4], tol=1e-4, iters=150)
    _, _, Va = torch.linalg.svd(_dense_masked(J, mask))
    _, _, Vb = torch.linalg.svd(J * (~inside).reshape(-1, 1).float())
    assert max_principal_angle(Va[:3], a.Vh) < 1e-2
    assert max_principal_angle(Vb[:4], b.Vh) < 1e-2


def test_null_space_projection_is_orthogonal_without_dense_projector():
    torch.manual_seed(0)
    D = 3 * 64 * 64
    N, _ = torch.linalg.qr(torch.randn(D, 5))
    N = N.T.contiguous()  # 5 orthonormal rows
    V = torch.randn(4, D)
    P = project_out(V, N)
    assert (P @ N.T).abs().max() < 1e-5
    torch.testing.assert_close(P.norm(dim=1), torch.ones(4))
    # Projection keeps what was already orthogonal.
    w = torch.randn(D)
    w = w - N.T @ (N @ w)
    torch.testing.assert_close(project_out(w[None], N)[0], w / w.norm(), rtol=1e-5, atol=1e-6)


def test_projection_refuses_a_direction_inside_the_null_basis():
    N = torch.eye(6)[:2]
    with pytest.raises(ValueError, match="null basis"):
        project_out(N[:1].clone(), N)


def test_rank_must_be_positive(problem):
    fn, x, _, _ = problem
    with pytest.raises(ValueError):
        jacobian_svd(fn, x, 0)


@pytest.mark.slow
def test_block_krylov_needs_fewer_iterations_than_subspace_iteration(problem):
    fn, x, J, mask = problem
    _, _, Vh0 = torch.linalg.svd(_dense_masked(J, mask))
    lin = Linearization(fn, x)
    (kry,) = block_subspace_svd(lin, [mask], [3], tol=1e-4, iters=200, method="krylov")
    (sub,) = block_subspace_svd(lin, [mask], [3], tol=1e-4, iters=200, method="subspace")
    assert kry.converged and sub.converged
    assert max_principal_angle(Vh0[:3], kry.Vh) < 1e-2 and max_principal_angle(Vh0[:3], sub.Vh) < 1e-2
    assert kry.iterations < sub.iterations
    with pytest.raises(ValueError, match="method"):
        block_subspace_svd(lin, [mask], [3], method="lanczos")


def test_a_small_krylov_block_finds_a_large_basis_with_fewer_products(problem):
    """A rank-12 basis grown 4 vectors an iteration (``block``) lands on the dense oracle's subspace,
    as the whole block of 14 does, with fewer Jacobian products; a watched projection cannot stop a
    small block before it has all its vectors; a negative block is refused."""
    fn, x, J, mask = problem
    outside = ~mask.expand(3, 8, 8)
    _, S0, Vh0 = torch.linalg.svd(J * outside.reshape(-1, 1).float())
    runs = {}
    for block in (0, 4):
        lin = Linearization(fn, x)
        (res,) = block_subspace_svd(lin, [outside], [12], tol=1e-4, iters=200, block=block)
        runs[block] = (res, lin.jvp_calls + lin.vjp_calls)
        assert res.converged and res.Vh.shape == (12, 192)
        assert max_principal_angle(Vh0[:12], res.Vh) < 1e-2
        torch.testing.assert_close(res.S, S0[:12], rtol=1e-3, atol=1e-5)
    assert runs[4][1] < runs[0][1]
    assert runs[4][0].iterations > runs[0][0].iterations
    w = Vh0[:1]  # its projection settles once the top vector is found, long before 24 vectors are
    (watched,) = block_subspace_svd(Linearization(fn, x), [outside], [24], tol=1e-1, iters=200, block=2, watch=[w])
    assert watched.Vh.shape == (24, 192) and watched.iterations >= 12  # 2 more rows an iteration
    with pytest.raises(ValueError, match="block"):
        block_subspace_svd(Linearization(fn, x), [outside], [12], block=-1)


def test_the_iteration_cap_counts_whole_blocks(problem):
    """``iters`` caps a basis at that many iterations of its whole block: grown 4 vectors at a time,
    a rank-12 basis (blocks of 14) may take ceil(3 * 14 / 4) = 11 under a cap of 3, about the same
    Jacobian products, and lands closer to the oracle than 3 whole blocks do (a plain cap of 3 small
    blocks would hold 12 vectors, barely the rank)."""
    fn, x, J, mask = problem
    outside = ~mask.expand(3, 8, 8)
    _, _, Vh0 = torch.linalg.svd(J * outside.reshape(-1, 1).float())
    assert iteration_cap(3, 12, block=4) == 11 and iteration_cap(3, 12, block=0) == 3 and iteration_cap(3, 2) == 6
    assert [block_width(r) for r in (1, 3, 5, 12, 20, 40)] == [2, 2, 2, 4, 4, 4] and block_width(5, block=0) == 7
    runs = {}
    for block in (0, 4):
        lin = Linearization(fn, x)
        (res,) = block_subspace_svd(lin, [outside], [12], tol=1e-9, iters=3, block=block)
        runs[block] = (res, lin.jvp_calls + lin.vjp_calls, max_principal_angle(Vh0[:12], res.Vh))
        assert not res.converged
    assert runs[0][0].iterations == 3 and runs[4][0].iterations == 11
    assert runs[4][1] <= 1.1 * runs[0][1]
    assert runs[4][2] < runs[0][2]


@pytest.mark.slow
def test_watched_vectors_stop_the_iteration_once_their_projections_settle(problem):
    """With ``watch``, a block stops when the watched vectors' projections settle: never later
    than the angle test, and the projection off the basis still matches the dense oracle's, in
    whole blocks and in small ones (where the projections are compared over a whole block's worth
    of iterations)."""
    fn, x, J, mask = problem
    outside = ~mask.expand(3, 8, 8)
    _, _, Vh0 = torch.linalg.svd(J * outside.reshape(-1, 1).float())
    N0 = Vh0[:6]
    g = torch.Generator().manual_seed(3)
    w = torch.randn(2, 192, generator=g)
    w = w - (w @ N0.T) @ N0 + 0.1 * torch.randn(2, 6, generator=g) @ N0  # mostly off the basis, as a transfer
    lin = Linearization(fn, x)
    for tol, block in ((1e-2, 0), (1e-3, 0), (1e-2, 2), (1e-3, 2)):
        (basis,) = block_subspace_svd(lin, [outside], [6], tol=tol, iters=200, block=block)
        (watched,) = block_subspace_svd(lin, [outside], [6], tol=tol, iters=200, watch=[w], block=block)
        assert watched.converged and watched.iterations <= basis.iterations
        assert basis.moved is None and watched.moved is not None
        assert (project_out(w, watched.Vh) - project_out(w, N0)).norm(dim=1).max() < tol
    (loose,) = block_subspace_svd(lin, [outside], [6], tol=1e-1, iters=200, watch=[w])
    assert loose.iterations < basis.iterations  # a loose tolerance on the projection stops sooner


def _dense_share(J, outside, w, N):
    """Each row of ``w`` projected off ``N``'s rows: its share of change (under the dense ``J``) where ``outside``."""
    p = w - (w @ N.T) @ N
    Jp = p @ J.T
    sel = outside.reshape(-1)
    return Jp[:, sel].pow(2).sum(1) / Jp.pow(2).sum(1)


def test_watched_share_is_exact_and_stops_once_it_settles(problem, monkeypatch):
    """With ``settle="share"``, a watched block follows each projected vector's share of change inside
    its mask, computed from the products already made: at every iteration it equals the dense
    oracle's share off that iteration's basis. The block stops once the share has settled, no later
    than the projection test, and the share at its stop is the converged basis's to the tolerance.
    Each watched vector settles on its own, so watching it with others gives its projection alone."""
    from locobank.loco import watch

    fn, x, J, mask = problem
    outside = ~mask.expand(3, 8, 8)
    _, _, Vh0 = torch.linalg.svd(J * outside.reshape(-1, 1).float())
    g = torch.Generator().manual_seed(3)
    w = torch.randn(2, 192, generator=g)
    seen = []
    real = watch.shares

    def spy(b):
        got = real(b)
        seen.append((got, _dense_share(J.double(), outside, b["watch"], b["top"].double())))
        return got

    monkeypatch.setattr(watch, "shares", spy)
    lin = Linearization(fn, x)
    for block in (0, 2):
        seen.clear()
        (shared,) = block_subspace_svd(lin, [outside], [6], tol=1e-2, iters=200, watch=[w], block=block,
                                       settle="share")
        (projected,) = block_subspace_svd(lin, [outside], [6], tol=1e-2, iters=200, watch=[w], block=block)
        assert shared.converged and shared.iterations <= projected.iterations and shared.moved < 1e-2
        assert len(seen) >= 2 and all(torch.allclose(a, b, atol=1e-6) for a, b in seen)
        final = _dense_share(J.double(), outside, w.double(), Vh0[:6].double())
        assert (seen[-1][1] - final).abs().max() < 1e-2
    # each vector settles on its own: watched with another, its projection is the one it has alone
    (pair,) = block_subspace_svd(lin, [outside], [6], tol=1e-2, iters=200, watch=[w], block=2, settle="share")
    for i in range(2):
        (alone,) = block_subspace_svd(lin, [outside], [6], tol=1e-2, iters=200, watch=[w[i : i + 1]], block=2,
                                      settle="share")
        assert alone.iterations <= pair.iterations
        torch.testing.assert_close(pair.projected[i], alone.projected[0], atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="settle must be one of"):
        block_subspace_svd(lin, [outside], [6], watch=[w], settle="bases")
    with pytest.raises(ValueError, match="needs a masked block"):
        block_subspace_svd(lin, [None], [6], watch=[w], settle="share")


class _BackwardOnlySquare(torch.autograd.Function):
    """x**2 with a backward formula and no forward-mode one, as some ops of real models are."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


def test_jvp_falls_back_to_reverse_mode_where_forward_ad_fails(problem, caplog):
    """An op with no forward-mode formula: J v still equals the dense Jacobian's, from reverse mode."""
    fn, x, J, _ = problem
    g = lambda z: _BackwardOnlySquare.apply(fn(z))  # noqa: E731
    with math_attention():
        dense = torch.autograd.functional.jacobian(g, x).reshape(192, 192)
    V = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    lin = Linearization(g, x, chunk=2, mode="forward")
    with caplog.at_level("WARNING", logger="locobank.loco.linearization"):
        JV = lin.jvp(V)
    assert lin.reverse_jvp
    assert sum("reverse mode" in r.message for r in caplog.records) == 1  # said once, not per chunk
    torch.testing.assert_close(JV.reshape(5, -1), V.reshape(5, -1) @ dense.T, rtol=1e-4, atol=1e-5)
    plain = Linearization(fn, x, mode="forward")  # where forward mode works it is used, and agrees with the dense J
    torch.testing.assert_close(plain.jvp(V).reshape(5, -1), V.reshape(5, -1) @ J.T, rtol=1e-4, atol=1e-5)
    assert not plain.reverse_jvp


def test_jtu_through_a_batch_of_copies_equals_the_dense_jacobian_and_the_vmapped_path(problem, caplog, monkeypatch):
    """J^T u as one backward pass through k copies of the state (the CPU's default) agrees with the
    dense Jacobian and with the vmapped path; each chunk size gets its graph, the two latest kept; a
    chunk whose copies would save more than VJP_GRAPH_BYTES goes through vmap; a model that cannot run under vmap (random noise inside) falls back to the vmapped path, said once."""
    fn, x, J, _ = problem
    U = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    want = U.reshape(5, -1) @ J
    assert resolve_vjp_mode("auto", torch.device("cpu")) == "batched"
    assert resolve_vjp_mode("auto", torch.device("cuda")) == "vmap"
    for mode in ("batched", "vmap"):
        with vjp_mode(mode):
            lin = Linearization(fn, x, chunk=2)
        assert lin.batched_vjp is (mode == "batched")
        torch.testing.assert_close(lin.vjp(U).reshape(5, -1), want, rtol=1e-4, atol=1e-5)
        assert sorted(lin._graphs) == ([1, 2] if mode == "batched" else [])  # chunks of 2, 2 and 1
        torch.testing.assert_close(lin.vjp(U[:3]).reshape(3, -1), want[:3], rtol=1e-4, atol=1e-5)
    lin = Linearization(fn, x, chunk=8, mode="reverse")
    for k in (1, 2, 3, 4):
        lin.vjp(U[:k])
    assert sorted(lin._graphs) == [3, 4]  # at most two sizes held
    monkeypatch.setattr(linearization, "VJP_GRAPH_BYTES", int(2.5 * lin._copy_bytes))
    lin = Linearization(fn, x, chunk=4, mode="reverse")  # chunks of 4 and 1: the 4 copies would save too much
    torch.testing.assert_close(lin.vjp(U).reshape(5, -1), want, rtol=1e-4, atol=1e-5)
    assert sorted(lin._graphs) == [1] and lin.batched_vjp  # the 4 through vmap, the batched path kept for small chunks
    noisy = lambda z: fn(z) + 0 * torch.randn_like(z)  # noqa: E731  (vmap refuses random ops by default)
    lin = Linearization(noisy, x, chunk=5)
    with caplog.at_level("WARNING", logger="locobank.loco.linearization"):
        got = [lin.vjp(U), lin.vjp(U)]
    assert not lin.batched_vjp
    assert sum("under vmap" in r.message for r in caplog.records) == 1
    torch.testing.assert_close(got[1].reshape(5, -1), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="J\\^T u mode"):
        with vjp_mode("sideways"):
            pass


class _Scale(torch.autograd.Function):
    """``2 x g``, linear in ``g``, whose own backward takes 0.3 s with ``slow="backward"``: the
    reverse map of J v runs through it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g, x, slow):
        return 2 * x * g

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.slow = inputs[2]

    @staticmethod
    def backward(ctx, h):
        (x,) = ctx.saved_tensors
        if ctx.slow == "backward":
            time.sleep(0.3)
        return 2 * x * h, None, None


class _SlowSquare(torch.autograd.Function):
    """x**2 whose forward-mode formula takes 0.3 s with ``slow="forward"``, and whose backward
    goes through :class:`_Scale`: a model where one way of computing J v is clearly the slower."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, slow):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])
        ctx.slow = inputs[1]

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return _Scale.apply(g, x, ctx.slow), None

    @staticmethod
    def jvp(ctx, gx, _):
        (x,) = ctx.saved_tensors
        if ctx.slow == "forward":
            time.sleep(0.3)
        return 2 * x * gx


def test_auto_times_both_ways_of_jv_on_the_cpu_and_keeps_the_faster_per_model(problem):
    """Under "auto" the first J v runs both ways and keeps the faster (a slow forward-mode formula:
    reverse; a slow backward: forward), remembered per model key, so a second state of the same
    model does not time again; every way agrees with the dense J; a bad mode is refused."""
    fn, x, J, _ = problem
    V = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for slow, reverse in (("forward", True), ("backward", False)):
        g = lambda z, slow=slow: _SlowSquare.apply(fn(z), slow) / (1 + fn(z).detach().abs())  # noqa: E731
        with math_attention():
            dense = torch.autograd.functional.jacobian(g, x).reshape(192, 192)
        key = f"slow {slow}"
        lin = Linearization(g, x, chunk=5, key=key)
        assert lin.reverse_jvp is None  # not timed yet
        torch.testing.assert_close(lin.jvp(V).reshape(5, -1), V.reshape(5, -1) @ dense.T, rtol=1e-4, atol=1e-5)
        assert lin.reverse_jvp is reverse
        torch.testing.assert_close(lin.jvp(V).reshape(5, -1), V.reshape(5, -1) @ dense.T, rtol=1e-4, atol=1e-5)
        assert Linearization(g, x + 0.1, key=key).reverse_jvp is reverse  # the model's choice, before any call
        assert Linearization(g, x, key="another model").reverse_jvp is None
    assert resolve_jvp_mode("auto", torch.device("cuda")) == "forward"
    for mode in ("forward", "reverse"):
        with jvp_mode(mode):
            lin = Linearization(fn, x, chunk=2)
        assert lin.reverse_jvp is (mode == "reverse")
        torch.testing.assert_close(lin.jvp(V).reshape(5, -1), V.reshape(5, -1) @ J.T, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="J v mode"):
        Linearization(fn, x, mode="sideways")


def test_a_warm_start_from_a_converged_basis_needs_fewer_iterations_and_lands_on_the_same_subspace(problem):
    fn, x, _, mask = problem
    lin = Linearization(fn, x)
    cold_edit, cold_null = block_subspace_svd(lin, [mask, ~mask], [3, 4], tol=1e-6, iters=100)
    assert cold_edit.converged and cold_null.converged
    # Start from the converged bases, rotated and with a perturbation, plus extra rows: any number of rows.
    g = torch.Generator().manual_seed(3)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=g))[0]
    edit0 = torch.cat([rot @ cold_edit.Vh + 1e-4 * torch.randn(3, 192, generator=g), torch.randn(4, 192, generator=g)])
    warm_edit, warm_null = block_subspace_svd(lin, [mask, ~mask], [3, 4], tol=1e-6, iters=100,
                                              start=[edit0, cold_null.Vh[:2]])
    assert warm_edit.converged and warm_null.converged
    assert warm_edit.iterations < cold_edit.iterations
    assert warm_null.iterations <= cold_null.iterations
    assert max_principal_angle(cold_edit.Vh, warm_edit.Vh) < 1e-4
    assert max_principal_angle(cold_null.Vh, warm_null.Vh) < 1e-4
    assert torch.allclose(warm_edit.S, cold_edit.S, rtol=1e-4)


def test_a_start_must_match_the_state(problem):
    fn, x, _, mask = problem
    lin = Linearization(fn, x)
    with pytest.raises(ValueError, match="start rows"):
        block_subspace_svd(lin, [mask], [2], start=[torch.randn(2, 10)])
    with pytest.raises(ValueError, match="one entry"):
        block_subspace_svd(lin, [mask], [2], start=[None, None])
