"""The image's own directions: the catalog hit says *what* to change, the image's own Jacobian *how*.

A direction found on one face moves the same part of another face less well than that face's own
directions do (on the toy latent model a mouth direction from another face has a cosine of about
0.1 with the target's own top-3 mouth subspace). So, on a target image with a mask:

1. the image is inverted to the hit's edit time;
2. its own top-``rank`` LOCO directions in the mask are found there (null space projected, as
   the model's settings find them), warm-started from the hit registered onto the mask;
3. each of them, either sign, and the hit itself (registered, with its sign) are previewed at
   ``strength`` (:func:`.preview.posterior_images`) and scored towards the query as the image-aware
   ranking scores hits (:func:`.ranking.score_previews`);
4. the best one is the edit: a unit vector signed so that ``+strength`` does the query. The hit
   competes because the image's top few directions need not include its edit (an iris colour).

Measured against plain transfer in ``docs/latent.md`` (the toy latent model's hits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import core
from ..models import LoadedModel
from ..settings import EditOptions

OWN_RANK = 3


@dataclass
class OwnDirection:
    """The image's own direction chosen for a query: signed so that ``+strength`` does it."""

    direction: core.Direction = field(repr=False)
    strength: float
    gain: float
    locality: float
    lost: float
    score: float
    alignment: float  # |cosine| with the hit registered onto the mask
    preview: Tensor = field(repr=False)
    unedited: Tensor = field(repr=False)
    is_hit: bool = False  # the hit itself previewed best: its vector (registered onto the mask) is applied


def own_basis(model: LoadedModel, x: Tensor, x_t: Tensor, hit: core.Direction, mask: Tensor,
              rank: int = OWN_RANK) -> tuple[Tensor, Tensor]:
    """(the image's own unit directions (rank, *state_shape) in ``mask`` at the hit's time, warm-started
    from the hit; the hit's vector registered onto ``mask``). ``x`` is the clean image (1, C, H, W)."""
    moved, _, _ = core.register(model, hit.vector[None].to(x_t.device), [hit.source], mask, image=x)
    start = core.warm.start_from(model, mask, edit=[moved], sources=[None], image=x, rank=rank)
    own = core.find_directions(model, x_t, hit.t_edit, mask, rank=rank, start=start,
                               constrained=model.settings.basis == "constrained")
    return own.vectors, moved[0]


def own_direction(model: LoadedModel, clip, query: str, image: Tensor, mask: Tensor, hit: core.Direction,
                  strength: float, *, sign: int = 1, rank: int = OWN_RANK, options: EditOptions | None = None,
                  domain: str = "face") -> OwnDirection:
    """The image's own direction that does ``query`` best in ``mask`` (see the module docstring):
    ``image`` (C, H, W) in [-1, 1], ``hit`` a catalog direction (its part and edit time say where
    and when; ``sign`` the one that does the query), previewed and applied at ``strength``."""
    opts = core.options_for(model, options)
    x = core.as_batch(model, image)
    mask = mask.to(model.device).bool()
    x_t = core.invert(model, x, hit.t_edit, opts.steps)
    vectors, moved = own_basis(model, x, x_t, hit, mask, rank)
    return choose_own(model, clip, query, x_t, vectors, moved, hit, strength, mask, sign=sign, domain=domain)


def choose_own(model: LoadedModel, clip, query: str, x_t: Tensor, vectors: Tensor, moved: Tensor,
               hit: core.Direction, strength: float, mask: Tensor, *, sign: int = 1, with_hit: bool = True,
               domain: str = "face") -> OwnDirection:
    """Of the own directions ``vectors`` (either sign) at the state ``x_t`` and the hit itself
    (``moved``: registered onto ``mask``; ``sign``: the one that does the query), the one whose
    preview at ``strength`` scores best towards ``query`` (``is_hit`` says when the hit won;
    ``with_hit`` False: the own directions alone)."""
    from ..search import text_direction
    from .preview import Previewed, posterior_images
    from .ranking import score_previews

    hit_v = (sign * moved / moved.norm().clamp_min(1e-12))[None].to(vectors.dtype)
    signed = torch.cat([vectors, -vectors] + ([hit_v] if with_hit else []))  # the hit competes too
    images = posterior_images(model, x_t, hit.t_edit, float(strength) * signed)
    base = posterior_images(model, x_t, hit.t_edit, torch.zeros_like(x_t))[0]
    scores = score_previews(clip, text_direction(clip, query, domain),
                            [Previewed(float(strength), 0.0, False, im, base) for im in images], mask)
    best = max(range(len(scores)), key=lambda i: (scores[i][3], -i))
    v = signed[best]
    cos = float((v.flatten().double() @ moved.flatten().double()) / moved.norm().clamp_min(1e-12))
    gain, loc, lost, score = scores[best]
    is_hit = with_hit and best == len(signed) - 1
    name = hit.name if is_hit else f"own({hit.name or 'hit'})"
    return OwnDirection(core.Direction(v.float(), hit.t_edit, hit.fingerprint, name=name), float(strength), gain,
                        loc, lost, score, abs(cos), images[best].cpu(), base.cpu(), is_hit)
