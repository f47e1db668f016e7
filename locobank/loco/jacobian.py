"""Top singular vectors of a (masked) Jacobian by block Krylov (or subspace) iteration, without
forming it: ``J V`` and ``J^T U`` come from one :class:`~.linearization.Linearization` of the
model function at the state, reused across iterations.
"""

from __future__ import annotations

import contextlib
import math

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from . import watch as watching
from .linearization import Linearization, math_attention


# How many new vectors a Krylov basis pushes through the model per iteration, at most: a basis of
# width m = rank + oversample pushes a quarter of it (at least 2), and never more than this. The Krylov
# space grows by the block each iteration; a smaller block reaches the same accuracy with fewer
# Jacobian products in more, cheaper iterations, as long as an iteration's own overhead stays small.
# Measured on the 2-core CPU (docs/performance.md), 6 jobs per toy model, each against the job
# converged to 1e-6:
# - with J v in forward mode (a fixed ~0.06 s a call), the toy models' null bases of rank 20 (whole
#   blocks of 22) paid best in blocks of 8 (harvest 1.4-1.5 times less time), rank 5 in blocks of 3;
# - with J v in reverse mode (:data:`locobank.loco.linearization.JVP_MODE`, ~0.01 s a call), blocks of
#   4 for rank 20 and of 2 for rank 3-5 took 1.2 (toy DDPM) and 1.1 (latent) times less time than
#   blocks of 8 and 2-3, within 5.7e-4 rad of converged (blocks of 8: 4.8e-4); blocks of 2-3 for
#   rank 20 were no faster and up to 1.7e-3 rad off.
# On a GPU, where a small batch may cost as much as a large one, 0 (the whole block) may be faster.
KRYLOV_BLOCK = 4


def block_width(rank: int, oversample: int = 2, block: int | None = None) -> int:
    """How many new vectors a Krylov basis of ``rank`` pushes through the model per iteration: a
    quarter of its width ``rank + oversample`` (at least 2, at most the width), and at most the block
    (None: :data:`KRYLOV_BLOCK`); with a block of 0, the whole width."""
    m = rank + max(0, oversample)
    block = KRYLOV_BLOCK if block is None else int(block)
    return min(m, block, max(2, math.ceil(m / 4))) if block else m


def iteration_cap(iters: int, rank: int, oversample: int = 2, block: int | None = None) -> int:
    """How many iterations a Krylov basis of ``rank`` may take under a cap of ``iters``: the cap counts
    whole-block iterations, so a basis grown in a smaller block (:func:`block_width`) may take
    proportionally more, cheaper ones, ``ceil(iters * (rank + oversample) / width)``: about the same
    Jacobian products as before the small blocks (a cap of 12 then left the toy models' null bases
    unconverged, their directions 1e-2 to 4e-2 rad off)."""
    m = rank + max(0, oversample)
    return math.ceil(int(iters) * m / max(1, block_width(rank, oversample, block)))


def basis_widths(rank: int, null_rank: int) -> list[int]:
    """How many vectors a job's edit basis and null basis push per iteration (:func:`block_width`;
    0 for no null basis): what its diagnostics record as ``krylov_widths``."""
    return [block_width(rank), block_width(null_rank) if null_rank > 0 else 0]


@contextlib.contextmanager
def krylov_block(block: int) -> Iterator[None]:
    """:data:`KRYLOV_BLOCK` set to ``block`` inside the ``with`` (0: whole blocks), and back after:
    how the benchmarks run the path before the small blocks beside the shipped one."""
    global KRYLOV_BLOCK
    shipped, KRYLOV_BLOCK = KRYLOV_BLOCK, int(block)
    try:
        yield
    finally:
        KRYLOV_BLOCK = shipped


@dataclass
class SubspaceResult:
    """Singular triplets of one masked Jacobian block plus how the iteration went."""

    U: Tensor  # (r, *out.shape), unit rows (zero outside the mask)
    S: Tensor  # (r,), descending
    Vh: Tensor  # (r, D_in), unit rows
    iterations: int
    converged: bool
    angle: float  # last change of the subspace, radians
    history: list[float] = field(default_factory=list)
    moved: float | None = None  # with watched vectors: the last change of their projections (relative)
    projected: Tensor | None = None  # settle="share": each watched vector off the basis where it settled


def max_principal_angle(A: Tensor, B: Tensor) -> float:
    """Largest principal angle (radians) between the row spaces of orthonormal ``A`` and ``B``.

    Computed from the sine, ``||B - (B A^T) A||_2``, which stays accurate for tiny angles.
    """
    A = A.to(torch.float64)
    B = B.to(torch.float64)
    resid = B - (B @ A.T) @ A
    s = torch.linalg.matrix_norm(resid, ord=2).clamp(max=1.0)
    return float(torch.asin(s))


def _orth_rows(W: Tensor) -> Tensor:
    """Orthonormal rows spanning the rows of ``W`` (k, D)."""
    Q, _ = torch.linalg.qr(W.T.to(torch.float64))
    return Q.T.to(W.dtype)


def _prepare_mask(mask: Tensor | None, out_shape: torch.Size, device) -> Tensor | None:
    if mask is None:
        return None
    m = mask.to(device=device, dtype=torch.float32)
    try:
        m = torch.broadcast_to(m, out_shape)
    except RuntimeError as e:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the output shape {tuple(out_shape)}") from e
    return m


def block_subspace_svd(
    lin: Linearization,
    masks: Sequence[Tensor | None],
    ranks: Sequence[int],
    *,
    iters: int = 50,
    tol: float | Sequence[float] = 1e-3,
    oversample: int = 2,
    seed: int = 0,
    constraints: Sequence[Tensor | None] | None = None,
    method: str = "krylov",
    max_basis: int | None = None,
    watch: Sequence[Tensor | None] | None = None,
    start: Sequence[Tensor | None] | None = None,
    block: int | None = None,
    settle: str = "projection",
) -> list[SubspaceResult]:
    """Top singular triplets of ``P_m J`` for several masks at once, sharing one linearisation.

    All blocks are pushed through the model in the same batched JVP/VJP calls, ``r + oversample``
    vectors per block per iteration. With ``method="subspace"`` each block iterates
    ``V <- orth(J_M^T J_M V)``; with ``"krylov"`` (default) it keeps every block it has made,
    ``[V, A V, A^2 V, ...]`` with ``A = J_M^T J_M``, and takes Ritz vectors from that whole
    space: the same model calls per iteration, far fewer iterations when singular values are
    close. The basis restarts from the current Ritz vectors when it reaches ``max_basis`` rows.
    A block stops when its top-``r`` subspace moves by less than ``tol`` radians (one value, or one
    per block), or unconverged after ``iters`` whole-block iterations' worth (:func:`iteration_cap`).

    ``constraints[i]``, when given, is a (k, D) matrix with orthonormal rows: block ``i`` then
    looks for its vectors in the orthogonal complement of those rows (``J_M (I - N^T N)``).

    ``watch[i]``, when given, is a (k, D) matrix of vectors that the caller will project onto
    (or off) block ``i``'s subspace. The block then also stops when those projections move by
    less than ``tol`` of each vector's norm over a whole block's worth of iterations (one in whole
    blocks, ``ceil(m / width)`` in small ones): the answer the caller needs has settled
    (:func:`locobank.core.reproject`); with ``settle="share"``, each one's share of change inside
    the block's mask, each vector on its own (:mod:`.watch`).

    ``start[i]``, when given, is a (k, D) matrix of rows (any number) where block ``i`` starts,
    with ``oversample`` fresh random rows added; a wide start is cut to the top ``r + oversample``
    Ritz vectors after the first iteration, with no model call. Convergence is judged as ever.

    ``block`` (Krylov only): at most this many new vectors per basis per iteration (None:
    :data:`KRYLOV_BLOCK`; 0: the whole ``r + oversample``). A ``start`` then gives its first rows
    (put its principal ones first), as many as the block holds with ``oversample`` random ones.
    """
    tols, width = _checked(len(masks), tol, method, block, settle, watch=watch, start=start)
    g = torch.Generator(device="cpu").manual_seed(seed)
    per = [[None] * len(masks) if p is None else p for p in (constraints, watch, start)]
    blocks = [None if r <= 0 else _new_block(lin, mask, r, oversample, tols[i], g, method, max_basis, *[p[i] for p in per],
                                             width=width, iters=iters, share=settle == "share")
              for i, (mask, r) in enumerate(zip(masks, ranks))]
    active = [b for b in blocks if b is not None]
    for _ in range(max((b["limit"] for b in active), default=0)):
        live = [b for b in active if not b["done"] and b["it"] < b["limit"]]
        back = _forward(lin, live) if live else None
        if not back:
            break
        _backward(lin, back)
    return [None if b is None else _result(b, lin) for b in blocks]


def _checked(n: int, tol, method: str, block: int | None, settle: str, **per) -> tuple[list[float], int | None]:
    """:func:`block_subspace_svd`'s arguments checked: one tolerance per mask, and the Krylov block
    (None: whole blocks)."""
    if settle not in watching.SETTLE_MODES:
        raise ValueError(f"settle must be one of {', '.join(watching.SETTLE_MODES)}, not {settle!r}")
    if method not in ("krylov", "subspace"):
        raise ValueError(f"method must be 'krylov' or 'subspace', not {method!r}")
    for name, rows in per.items():
        if rows is not None and len(rows) != n:
            raise ValueError(f"{name} needs one entry (or None) per mask: {len(rows)} for {n} masks")
    block = KRYLOV_BLOCK if block is None else int(block)
    if block < 0:
        raise ValueError(f"block must be 0 (the whole block) or more, not {block}")
    tols = [float(tol)] * n if isinstance(tol, (int, float)) else [float(t) for t in tol]
    return tols, None if method == "subspace" or not block else block


def _start_rows(x: Tensor, m: int, oversample: int, g: torch.Generator, S: Tensor | None) -> Tensor:
    """The first block's rows: the given start rows plus ``oversample`` random ones (at least ``m``
    rows, at most ``D``), or ``m`` random rows."""
    D = x.numel()
    if S is None:
        return torch.randn(m, D, generator=g, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    S = S.reshape(S.shape[0], -1).to(device=x.device, dtype=x.dtype)
    if S.shape[1] != D:
        raise ValueError(f"start rows have {S.shape[1]} entries, the state has {D}")
    k = min(D, max(m, S.shape[0] + max(0, oversample)))
    S = S[:k]
    fresh = torch.randn(k - S.shape[0], D, generator=g, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    return torch.cat([S, fresh])


def _new_block(lin: Linearization, mask, r: int, oversample: int, tol: float, g: torch.Generator, method: str,
               max_basis: int | None, N: Tensor | None, W: Tensor | None, S: Tensor | None = None,
               width: int | None = None, iters: int = 50, share: bool = False) -> dict:
    """One block's state: a random or given start (off the constraint rows), its basis cap and stop
    rules; ``width``: the Krylov block, at most this many start rows (given and random); ``iters``:
    the cap in whole blocks (:func:`iteration_cap`)."""
    x = lin.x
    D = x.numel()
    m = min(D, r + max(0, oversample))
    w = min(D, block_width(r, oversample, width or 0))
    if width is not None and S is not None:
        S = S[: max(1, width - max(0, oversample))]  # a start's first rows, its principal ones, fill KRYLOV_BLOCK
    V0 = _start_rows(x, w, oversample, g, S)
    if N is not None:
        N = N.reshape(N.shape[0], -1).to(device=x.device, dtype=x.dtype)
        V0 = V0 - (V0 @ N.T) @ N
    cap = m if method == "subspace" else max(2 * m, min(max_basis or 24 * m, D // 2))
    if W is not None:
        W = W.reshape(W.shape[0], -1).to(device=x.device, dtype=torch.float64)
    b = {"N": N, "r": r, "m": m, "cap": cap, "tol": tol, "mask": _prepare_mask(mask, lin.out.shape, x.device),
         "V": _orth_rows(V0), "Q": None, "Y": None, "prev": None, "done": False, "it": 0,
         "angle": math.inf, "hist": [], "watch": W, "shadow": None, "moved": None, "w": w,
         "limit": iteration_cap(iters, r, oversample, width or 0)}
    if share and W is not None:
        watching.start_share(lin, b)
    return b


def _forward(lin: Linearization, live: list[dict]) -> list[tuple[dict, Tensor]]:
    """``J V`` for every live block in one batch, their Ritz vectors and stop tests; returns the
    blocks that go on, each with its masked ``J V``."""
    Y = lin.jvp(torch.cat([b["V"] for b in live]).reshape(-1, *lin.x.shape))
    back = []
    pos = 0
    for b in live:
        k = b["V"].shape[0]
        Yb = Y[pos : pos + k]
        pos += k
        watching.keep_rows(b, Yb)
        if b["mask"] is not None:
            Yb = Yb * b["mask"]
        Yb = Yb.reshape(k, -1)
        b["Q"] = b["V"] if b["Q"] is None else torch.cat([b["Q"], b["V"]])
        b["Y"] = Yb if b["Y"] is None else torch.cat([b["Y"], Yb])
        _ritz(b)
        if b["Q"].shape[0] > b["m"] and b["it"] == 0:
            Yb = _narrow(b)  # a wide start: go on with its top Ritz vectors only
        b["it"] += 1
        settled = watching.settled(b)
        if b["prev"] is not None:
            b["angle"] = max_principal_angle(b["prev"], b["top"])
            b["hist"].append(b["angle"])
            whole = b["top"].shape[0] >= b["r"]  # a small block's first iterations have fewer than r
            if whole and (b["angle"] < b["tol"] or settled):
                b["done"] = True
                continue
        b["prev"] = b["top"]
        back.append((b, Yb))
    return back


def _backward(lin: Linearization, back: list[tuple[dict, Tensor]]) -> None:
    """``J^T (J V)`` for the blocks that go on, in one batch, and each block's next vectors."""
    W = lin.vjp(torch.cat([Yb for _, Yb in back]).reshape(-1, *lin.out.shape))
    pos = 0
    for b, Yb in back:
        k = Yb.shape[0]
        Wb = W[pos : pos + k].reshape(k, -1)
        pos += k
        _next_block(b, Wb)


def _result(b: dict, lin: Linearization) -> SubspaceResult:
    r = b["r"]
    return SubspaceResult(U=b["U"][:r].reshape(r, *lin.out.shape), S=b["S"][:r], Vh=b["top"], iterations=b["it"],
                          converged=b["done"], angle=float(b["angle"]), history=b["hist"], moved=b["moved"],
                          projected=watching.projected(b))


def _narrow(b: dict) -> Tensor:
    """Cut a block's basis back to its top ``m`` Ritz vectors, whose masked ``J q`` are
    ``U diag(S)`` already: no model call. Returns their ``J q`` rows."""
    m = b["m"]
    watching.narrow_rows(b, m)
    b["Q"] = b["ritz"][:m]
    b["Y"] = (b["U"][:m] * b["S"][:m, None]).to(b["Y"].dtype)
    b["V"] = b["Q"]
    return b["Y"]


def _next_block(b: dict, W: Tensor) -> None:
    """The next block to push through the model: ``W = A V`` made orthogonal to the basis so far
    (Krylov), or simply orthonormalised (subspace iteration); restart when the basis is full."""
    if b["N"] is not None:
        W = W - (W @ b["N"].T) @ b["N"]
    if b["Q"].shape[0] + b["m"] > b["cap"]:
        # Restart: subspace iteration continues from orth(A V); Krylov from its current Ritz vectors.
        b["V"] = _orth_rows(W) if b["cap"] == b["m"] else b["ritz"][: b["m"]]
        b["Q"] = None
        b["Y"] = None
        watching.forget_rows(b)
        return
    Q = b["Q"].to(torch.float64)
    W = W.to(torch.float64)
    N = b["N"].to(torch.float64) if b["N"] is not None else None
    for _ in range(2):  # twice is enough (Kahan): keeps the basis orthogonal to working precision
        W = W - (W @ Q.T) @ Q
        if N is not None:
            # Again after Q, in float64: what is left of W can be tiny, and a rounding error
            # along N would otherwise come back, relatively large, in the normalised block.
            W = W - (W @ N.T) @ N
    norms = W.norm(dim=1)
    keep = norms > 1e-10 * max(1.0, float(norms.max()))
    if not bool(keep.any()):
        b["done"] = True  # the Krylov space is invariant: the Ritz vectors are exact
        return
    b["V"] = _orth_rows(W[keep]).to(b["Q"].dtype)


def _ritz(b: dict) -> None:
    """Rayleigh-Ritz over the block's basis Q: the rotation that makes (P_M J) Q^T's columns orthogonal."""
    Ymat = b["Y"].to(torch.float64)  # rows are (P_M J) q_i
    Uy, S, Qh = torch.linalg.svd(Ymat.T, full_matrices=False)  # Ymat.T = Uy diag(S) Qh
    ritz = Qh @ b["Q"].to(torch.float64)  # rows: right Ritz vectors, by descending S
    dt = b["Q"].dtype
    b["Qh"] = Qh
    b["ritz"] = ritz.to(dt)
    b["top"] = b["ritz"][: b["r"]]
    b["S"] = S.to(dt)
    b["U"] = Uy.T.to(dt)


def jacobian_svd(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    rank: int,
    *,
    mask: Tensor | None = None,
    iters: int = 50,
    tol: float = 1e-3,
    chunk: int = 16,
    oversample: int = 2,
    seed: int = 0,
    method: str = "krylov",
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``rank`` SVD of the Jacobian of ``fn`` at ``x``, restricted to outputs where ``mask``.

    ``method`` is "krylov" (block Krylov with Rayleigh-Ritz, the default) or "subspace"
    (plain subspace iteration); see :func:`block_subspace_svd`.

    Returns ``(U, S, Vh)``: ``U`` (rank, *out.shape), ``S`` (rank,) descending, and ``Vh``
    (rank, x.numel()) whose rows are the unit right singular vectors. J is never formed.
    """
    if rank < 1:
        raise ValueError("rank must be at least 1")
    lin = Linearization(fn, x, chunk=chunk)
    (res,) = block_subspace_svd(lin, [mask], [rank], iters=iters, tol=tol, oversample=oversample, seed=seed,
                                method=method)
    return res.U, res.S, res.Vh


def project_out(V: Tensor, N: Tensor) -> Tensor:
    """Remove from each row of ``V`` its component in the span of the orthonormal rows of ``N``,
    then renormalise: ``v <- (v - N^T (N v)) / ||.||``. Never forms a D x D projector."""
    Vf = V.reshape(V.shape[0], -1)
    if N is None or N.numel() == 0:
        P = Vf
    else:
        Nf = N.reshape(N.shape[0], -1).to(Vf.dtype)
        P = Vf - (Vf @ Nf.T) @ Nf
    norms = P.norm(dim=1, keepdim=True)
    if (norms < 1e-12).any():
        raise ValueError("a direction lies entirely in the null basis; nothing is left after projection")
    return (P / norms).reshape(V.shape)


__all__ = ["KRYLOV_BLOCK", "Linearization", "SubspaceResult", "basis_widths", "block_subspace_svd", "block_width",
           "iteration_cap",
           "krylov_block", "jacobian_svd", "max_principal_angle",
           "math_attention", "project_out"]
