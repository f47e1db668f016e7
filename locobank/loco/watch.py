"""When a watched Krylov block has done its job: the stop tests for a basis whose caller only projects
a few given vectors off it (:func:`locobank.loco.jacobian.block_subspace_svd`'s ``watch``).

Two tests, each over a whole block's worth of iterations (``ceil(m / width)``: a basis grown a few
vectors at a time moves little per iteration however far from settled, so one iteration is too short a
look; in blocks of 4 a rank-20 null basis shared by several directions stopped with its projections 33 %
from settled):

- ``"projection"``: the watched vectors' projections off the basis moved by less than ``tol`` of their
  norm;
- ``"share"``: each projected vector's share of change inside the block's mask, ``||P_M J p||^2 /
  ||J p||^2`` (for a null basis, the mask is the outside: the edit's spill), moved by less than
  ``tol``. This is what a re-projection is for. A null basis of rank 20 has no spectral gap (its
  σ20/σ21 is 1.001-1.015 on the toy models), so its subspace, and the projections a little, keep
  moving long after the spill they leave has settled (docs/performance.md). It costs one ``J v``
  of the watched vectors, once, and no model call per iteration: ``J`` of the basis is known from
  the Krylov products already made (their part inside the mask from the Ritz step, the rest kept
  here).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .linearization import Linearization

SETTLE_MODES = ("projection", "share")
# The share test's guard: a vector's projection must also have moved by less than this (relative) over
# the same look. The share alone can sit still while the basis grows in directions that do not touch it
# (on one toy face it stopped after 8 iterations, the vector at cosine 0.996 with the settled one).
SHARE_GUARD = 5e-2


def start_share(lin: Linearization, b: dict) -> None:
    """Set up block ``b``'s share test: its watched vectors' ``J w`` (one call), split inside and
    outside its mask, and room for its Krylov rows' ``J q`` outside the mask."""
    if b["mask"] is None:
        raise ValueError("the share test needs a masked block: the share is of change inside its mask")
    W = b["watch"]
    JW = lin.jvp(W.to(lin.x.dtype).reshape(-1, *lin.x.shape)).reshape(W.shape[0], -1).to(torch.float64)
    inside = b["mask"].reshape(-1) > 0
    b["share"] = {"off": torch.nonzero(~inside).reshape(-1), "JW_in": JW * inside, "JW_off": JW[:, ~inside],
                  "JQ_off": None, "hist": []}


def keep_rows(b: dict, Yfull: Tensor) -> None:
    """Keep the part outside the block's mask of its new Krylov rows' ``J q`` (k, out)."""
    sh = b.get("share")
    if sh is None:
        return
    rows = Yfull.reshape(Yfull.shape[0], -1)[:, sh["off"]].to(torch.float64)
    sh["JQ_off"] = rows if sh["JQ_off"] is None else torch.cat([sh["JQ_off"], rows])


def narrow_rows(b: dict, m: int) -> None:
    """The kept rows for a basis cut to its top ``m`` Ritz vectors (``b["Qh"]``: the Ritz rotation)."""
    sh = b.get("share")
    if sh is not None and sh["JQ_off"] is not None:
        sh["JQ_off"] = b["Qh"][:m] @ sh["JQ_off"]


def forget_rows(b: dict) -> None:
    """A restarted basis keeps no rows."""
    sh = b.get("share")
    if sh is not None:
        sh["JQ_off"] = None


def shares(b: dict) -> Tensor:
    """Each watched vector's share of change inside the mask once projected off the block's current
    top subspace, from the products made so far (no model call)."""
    sh = b["share"]
    N = b["top"].to(torch.float64)
    r = N.shape[0]  # fewer than the rank in a small block's first iterations
    c = b["watch"] @ N.T  # (k, r): each watched vector's coordinates on the basis
    JN_in = b["U"][:r].to(torch.float64) * b["S"][:r, None].to(torch.float64)  # P_M J n, full size
    JN_off = b["Qh"][:r] @ sh["JQ_off"]
    inside = (sh["JW_in"] - c @ JN_in.reshape(r, -1)).pow(2).sum(1)
    outside = (sh["JW_off"] - c @ JN_off).pow(2).sum(1)
    return inside / (inside + outside).clamp_min(1e-300)


def settled(b: dict) -> bool:
    """Whether block ``b``'s watched vectors have settled (see the module docstring); records how much
    they moved over the look in ``b["moved"]``. With the share test each vector settles on its own:
    its projection is kept from the iteration its own test passed (``b["share"]["kept"]``), which is
    where a block watching it alone would have stopped, so watching it with others changes nothing."""
    W = b["watch"]
    if W is None:
        return False
    lag = max(1, math.ceil(b["m"] / max(1, b["w"])))
    top = b["top"].to(torch.float64)
    projections = b["shadow"] = (b["shadow"] or [])[-lag:] + [(W @ top.T) @ top]
    moved = None
    if len(projections) > lag:
        moved = (projections[-1] - projections[0]).norm(dim=1) / W.norm(dim=1).clamp_min(1e-30)
    sh = b.get("share")
    if sh is None:
        b["moved"] = None if moved is None else float(moved.max())
        return moved is not None and b["moved"] < b["tol"]
    hist = sh["hist"] = sh["hist"][-lag:] + [shares(b)]
    if moved is None or len(hist) <= lag or top.shape[0] < b["r"]:
        return False
    change = (hist[-1] - hist[0]).abs()
    b["moved"] = float(change.max())
    kept = sh.setdefault("kept", {})
    for i in torch.nonzero((change < b["tol"]) & (moved < SHARE_GUARD)).reshape(-1).tolist():
        kept.setdefault(i, W[i] - projections[-1][i])
    return len(kept) == W.shape[0]


def projected(b: dict) -> Tensor | None:
    """With the share test: each watched vector projected off the basis, at the iteration it settled
    (or, unsettled, off the final basis); None otherwise."""
    sh = b.get("share")
    if sh is None:
        return None
    W = b["watch"]
    top = b["top"].to(torch.float64)
    out = W - (W @ top.T) @ top
    for i, p in sh.get("kept", {}).items():
        out[i] = p
    return out


__all__ = ["SETTLE_MODES", "SHARE_GUARD", "forget_rows", "keep_rows", "narrow_rows", "projected", "settled", "shares",
           "start_share"]
