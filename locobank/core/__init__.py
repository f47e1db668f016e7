"""The edit core: LOCO Edit on any model family, in small modules, one job each.

- :mod:`.time`: the edit time, resolved once (:class:`EditTime`).
- :mod:`.states`: images to states at the edit time (inversion, forward noise) and back.
- :mod:`.find`: finding directions on one state; :mod:`.warm`: where its iterations start.
- :mod:`.cost`: cost in forward-pass equivalents.
- :mod:`.transfer`: registration, shift and re-projection onto another image's mask.
- :mod:`.spill`: spill passes that correct a masked edit through the whole sampler.
- :mod:`.direction`: a direction, its checks, and how several add up.
- :mod:`.compose`: editing images with one or several directions, at one or several times.
- :mod:`.each`: many single-direction candidates on the same images, sharing their work.

Everything here talks to the model through :class:`~locobank.models.family.ModelFamily`.
"""

from ..settings import EditOptions
from .compose import Inverted, edit, edit_masked, options_for
from .direction import Direction, EditResult, check_direction, compose, locality
from .each import SharedAt, edit_each, shared_at
from . import warm
from .cost import forward_seconds, fpe
from .find import Directions, Start, find_directions, find_many, linearize
from .supervised import find_supervised
from .spill import spill_pass, with_spill_passes
from .states import as_batch, generate, generate_to, invert, invert_on, noise_for, noise_to, sample
from .time import EditTime, to_timestep
from .transfer import REPROJECT_TOL, NullBases, align, masks_for, register, relocalize, reproject

__all__ = ["REPROJECT_TOL", "Inverted", "NullBases", "Direction", "Directions", "Start", "forward_seconds", "fpe", "warm", "EditOptions", "EditResult", "EditTime", "align", "as_batch",
           "check_direction", "compose", "edit", "edit_each", "edit_masked", "shared_at", "SharedAt", "find_directions", "find_many", "find_supervised", "generate",
           "generate_to", "invert", "invert_on", "linearize", "locality", "noise_for", "masks_for", "noise_to", "options_for", "register", "relocalize", "reproject", "sample",
           "spill_pass", "to_timestep", "with_spill_passes"]
