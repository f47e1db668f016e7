"""Image-aware search: text search narrows the pool, previews on the user's image decide the
order and the strength.

- :mod:`.preview`: the posterior mean of each candidate's edited state, batched after one
  inversion (or sampled down in a few DDIM steps, for the first hits' second look), and strengths
  calibrated to one size of change (:data:`RANK_TARGET`; one unit of strength, ``ID:1x``, is
  :data:`CHANGE_TARGET`);
- :mod:`.ranking`: the previews scored by CLIP (gain, locality, what they break) and ranked;
- :mod:`.sheet`: the ranking drawn as a contact sheet of previews;
- :mod:`.linear`: each direction's strength scale, measured when it is indexed (``ID:1x``, its linear limit);
- :mod:`.own`: the image's own direction in its mask, pointed to by a hit (``apply --own``).
"""

from .preview import (CALIBRATION_TOL, CHANGE_TARGET, STRENGTH_CAP, STRENGTH_FLOOR, Previewed, StateAt, calibrated_strengths,
                      change_size, narrowed, posterior_images, preview_pool, preview_states,
                      regions_for, states_for)
from .ranking import (BREAK_WEIGHT, ORDERS, RANK_TARGET, REFINE_STEPS, REFINE_TOP, VERIFY_FLOOR, ImageHit, Pool, as_image, as_mask, candidate_pool, masks_per_image, ordered,
                      rank_for_image, rank_for_images, rank_pool, second_look,
                      score_previews)
from .sheet import preview_tiles, ranking_sheet

__all__ = ["as_image", "as_mask", "BREAK_WEIGHT", "ORDERS", "RANK_TARGET", "REFINE_STEPS", "REFINE_TOP", "VERIFY_FLOOR", "narrowed", "preview_pool", "preview_states", "ordered", "CALIBRATION_TOL", "CHANGE_TARGET", "STRENGTH_CAP", "STRENGTH_FLOOR", "ImageHit", "Pool", "Previewed",
           "StateAt", "calibrated_strengths", "candidate_pool", "change_size", "posterior_images",
           "masks_per_image", "preview_tiles", "rank_for_image", "rank_for_images", "rank_pool", "ranking_sheet", "second_look",
           "regions_for", "score_previews", "states_for"]
