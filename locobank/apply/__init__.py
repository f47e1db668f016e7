"""Applying catalog directions to new images: transfer, composition, sweeps, search-and-apply.

- :mod:`.specs`: ``ID[:STRENGTH]`` and image arguments;
- :mod:`.prepare`: directions loaded and checked against their model;
- :mod:`.edits`: transfer, composition and sweeps on image files;
- :mod:`.best_of`: the top hits for a text, and each image's best edit among them;
- :mod:`.request` and :mod:`.run`: ``locobank apply`` as one checked request and one call.
"""

from .best_of import Candidate, apply_best_of, choose, query_candidates
from .edits import apply_to_images, sweep
from .prepare import MaskArg, Prepared, load_masks, prepare, source_part
from .request import MAX_STRENGTH, ApplyOutcome, ApplyRequest, check_out, check_strength, request_from_args, split_args
from .run import run_apply
from .specs import DirectionSpec, expand_images, parse_spec

__all__ = ["MAX_STRENGTH", "ApplyOutcome", "ApplyRequest", "Candidate", "DirectionSpec", "MaskArg", "Prepared",
           "apply_best_of", "apply_to_images", "check_out", "check_strength", "choose", "expand_images",
           "load_masks", "parse_spec", "prepare", "query_candidates", "request_from_args", "run_apply",
           "source_part", "split_args", "sweep"]
