"""Applying catalog directions to new images: transfer, composition, sweeps, search-and-apply.

- :mod:`.specs`: directions as ``ID[:STRENGTH]`` and images as files, folders or globs;
- :mod:`.prepare`: directions loaded and checked against their model;
- :mod:`.sources`: what an edit starts from (image files, or seeds' samples);
- :mod:`.edits`: transfer and composition on image files;
- :mod:`.settle`: an image made ready once for edits at many strengths, and sweeps over them;
- :mod:`.best_of`: the top hits for a text, and each image's best edit among them;
- :mod:`.request` and :mod:`.run`: ``locobank apply`` as one checked request and one call.

Every edit takes one :class:`~locobank.settings.EditOptions` (``options``; None: the model's settings).
"""

from .best_of import Candidate, apply_best_of, choose, query_candidates
from .edits import apply_to_images
from .prepare import MaskArg, Prepared, load_masks, prepare, source_part
from .request import MAX_STRENGTH, ApplyOutcome, ApplyRequest, check_out, check_strength
from .run import run_apply
from .settle import Settled, edit_settled, settle, sweep, sweep_settled
from .sources import Source, load_batch, load_sources
from .specs import SPEC, DirectionSpec, expand_images, parse_spec

__all__ = ["MAX_STRENGTH", "SPEC", "ApplyOutcome", "ApplyRequest", "Candidate", "DirectionSpec", "MaskArg", "Prepared",
           "Settled", "Source", "apply_best_of", "apply_to_images", "check_out", "check_strength", "choose",
           "edit_settled", "expand_images", "load_batch", "load_masks", "load_sources", "parse_spec", "prepare",
           "query_candidates", "run_apply", "settle", "source_part", "sweep", "sweep_settled"]
