"""`locobank apply` as one library call: an :class:`ApplyRequest`, checked before any work, run
against a catalog into written files and notes that say what was done. Its errors name the
request's fields (``params``), which the CLI says as its flags."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ArgumentError
from ..settings import EditOptions
from .specs import DirectionSpec

if TYPE_CHECKING:
    from ..models import LoadedModel

STEM = "{stem}"  # in a mask's path: each image's file name without its suffix (one mask per image)
MAX_STRENGTH = 100.0  # |lambda| on a unit direction; the LOCO reference uses 8, the toy model 4-12


@dataclass
class ApplyRequest:
    """Everything ``locobank apply`` can be asked. ``check()`` validates it all before any model,
    CLIP or catalog work. ``seed``, ``steps``, ``max_shift``, ``spill_passes`` and ``register`` are
    the edit options (None: the model's); :meth:`edit_options` resolves them once the model is known."""

    images: list[Path]
    out: Path
    specs: list[DirectionSpec] = field(default_factory=list)
    query: str | None = None
    candidates: int = 1
    pool: int = 32  # query on image files: the text hits each image's previews rank
    blind: bool = False  # query: the text ranking alone, at the parts' default strengths (no previews)
    own: bool = False  # query with a mask: apply the image's own direction the hit points to (rank.own)
    preview_steps: int = 1  # query on image files: DDIM steps of each preview (ranking and calibrated strength)
    refine: int | None = None  # query on image files: hits looked at again in 5 steps (None: rank.REFINE_TOP)
    preview_precision: str | None = None  # query on image files: the previews' dtype (None: rank.PREVIEW_PRECISION)
    clip: str = "toy"
    domain: str = "face"
    strength: float | None = None
    masks: list[Path] = field(default_factory=list)
    orthogonalize: bool = False
    sweep: list[float] | None = None
    resize: bool = False
    batch: int = 16
    model_override: str | None = None
    device: str | None = None
    seed: int = 0
    steps: int | None = None
    max_shift: int | None = None
    spill_passes: int | None = None
    register: bool = True
    # Text-to-image (latent) models: the condition the images are inverted and sampled under, and
    # seeds to generate from (the prompt's samples, edited at the directions' time) instead of images.
    prompt: str | None = None
    negative_prompt: str = ""
    guidance: float | None = None
    generate: list[int] = field(default_factory=list)

    def check(self) -> "ApplyRequest":
        """Refuse what cannot work, with the reason and the fix; returns self."""
        if self.query and self.specs:
            raise ArgumentError("give specs or query, not both", params=("specs", "query"))
        if not self.query and not self.specs:
            raise ArgumentError("nothing to apply: give specs (directions) or query (a text)",
                                params=("specs", "query"))
        if self.candidates > 1 and not self.query:
            raise ArgumentError("candidates chooses among the hits of query; give query too",
                                params=("candidates", "query"))
        if self.pool < 1:
            raise ArgumentError(f"pool must be at least 1, got {self.pool}", params=("pool",))
        if self.preview_steps < 1 or (self.preview_steps > 1 and not self.ranks_per_image()):
            raise ArgumentError("preview_steps (at least 1) is for a query ranked by its previews on image files, "
                                "not blind", params=("preview_steps", "blind"))
        if self.refine is not None and (self.refine < 0 or (self.refine > 0 and not self.ranks_per_image())):
            raise ArgumentError("refine (0 or more) is for a query ranked by its previews on image files, not blind",
                                params=("refine", "blind"))
        if self.preview_precision is not None and not self.ranks_per_image():
            raise ArgumentError("preview_precision is for a query ranked by its previews on image files, not blind",
                                params=("preview_precision", "blind"))
        if self.own and not (self.query and self.masks and not self.blind and not self.generate):
            raise ArgumentError("own finds the image's own directions in its mask for a query: give query and "
                                "one mask, on image files, without blind", params=("own", "query", "mask"))
        if self.query and len(self.masks) > 1:
            raise ArgumentError(f"query applies one direction: give one mask, not {len(self.masks)}",
                                params=("query", "mask"))
        for s in [self.strength] + [sp.strength for sp in self.specs]:
            check_strength(s)
        if self.sweep is not None:
            if not self.sweep:
                raise ArgumentError("sweep needs at least one strength, e.g. [-8, -4, 0, 4, 8]", params=("sweep",))
            for s in self.sweep:
                check_strength(s)
        self._check_masks()
        self._check_condition()
        check_out(self.out, many=len(self.sources()) > 1)
        return self

    def _check_masks(self) -> None:
        """One image's masks, or a pattern naming each image's (``{stem}``), whose files all exist."""
        if not self.masks:
            return
        if not self.per_image_masks():
            if len(self.sources()) > 1:
                raise ArgumentError(f"{len(self.sources())} images were given with one mask, which is one image's: "
                                    f"give each image its own with a pattern, e.g. masks/{{stem}}_mouth.png, where "
                                    f"{{stem}} is each image's file name without its suffix", params=("masks",))
            return
        if any(STEM not in str(m) for m in self.masks):
            raise ArgumentError(f"give every mask as a pattern with {STEM}, or none: {', '.join(map(str, self.masks))}",
                                params=("masks",))
        if self.generate:
            raise ArgumentError(f"a mask pattern ({STEM}) names image files' masks; a prompt's samples have none",
                                params=("masks", "generate"))
        missing = [str(p) for image in self.images for p in self.masks_for(image) if not p.is_file()]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ArgumentError(f"{len(missing)} mask file{'s' if len(missing) > 1 else ''} of the pattern "
                                f"{', '.join(map(str, self.masks))} not found: {', '.join(missing[:3])}{more}",
                                params=("masks",))

    def per_image_masks(self) -> bool:
        """Whether the masks are patterns that name each image's own (``{stem}``)."""
        return any(STEM in str(m) for m in self.masks)

    def masks_for(self, image: Path) -> list[Path]:
        """``image``'s masks: the patterns with its stem put in (plain masks as they are)."""
        return [Path(str(m).replace(STEM, Path(image).stem)) for m in self.masks]

    def _check_condition(self) -> None:
        """Prompt, guidance and seeds: what generation needs, and nothing that cannot work."""
        if self.guidance is not None and not (math.isfinite(self.guidance) and 0 < self.guidance <= 50):
            raise ArgumentError(f"guidance {self.guidance:g} is out of range: use a number in (0, 50] (SD uses 7.5)",
                                params=("guidance",))
        if self.negative_prompt and self.prompt is None:
            raise ArgumentError("negative_prompt goes with prompt", params=("negative_prompt", "prompt"))
        if self.generate:
            if self.images:
                raise ArgumentError("give images or generate seeds, not both", params=("images", "generate"))
            if self.prompt is None:
                raise ArgumentError("generate samples a text-to-image model: give prompt too",
                                    params=("generate", "prompt"))
        elif not self.images:
            raise ArgumentError("nothing to edit: give images (or generate seeds with a prompt)",
                                params=("images", "generate"))

    def ranks_per_image(self) -> bool:
        """Whether a query's hits are ranked on each image by their previews (image files, not
        ``blind``); a prompt's samples (``generate``) use the text ranking."""
        return bool(self.query) and not self.blind and not self.generate

    def sources(self) -> list["Path | int"]:
        """What is edited: the image files, or the seeds to generate from."""
        return list(self.generate) if self.generate else list(self.images)

    def condition(self) -> dict | None:
        """The prompt, negative prompt and guidance for a text-to-image model (None: none given)."""
        if self.prompt is None:
            return None
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "guidance": self.guidance}

    def edit_options(self, model: LoadedModel) -> EditOptions:
        """The edit options asked for, over ``model``'s settings for those left None."""
        return model.settings.edit_options(seed=self.seed, steps=self.steps, max_shift=self.max_shift,
                                           spill_passes=self.spill_passes, register=self.register)

    def image_masks(self) -> list[list[Path]] | None:
        """Each image's own masks, for several images given a mask pattern (else None: ``mask_arg``)."""
        if self.per_image_masks() and len(self.images) > 1:
            return [self.masks_for(p) for p in self.images]
        return None

    def mask_arg(self) -> list[Path] | None:
        """The target masks as the apply functions' ``mask`` takes them, for one image (None: none)."""
        if self.per_image_masks() and len(self.images) == 1:
            return self.masks_for(self.images[0])
        return list(self.masks) or None


@dataclass
class ApplyOutcome:
    """What a run wrote and what people should be told about it."""

    written: list[Path]
    notes: list[str]


def check_strength(s: float | None) -> None:
    """A strength is finite and at most :data:`MAX_STRENGTH` in size (None: the default)."""
    if s is None:
        return
    if not math.isfinite(s) or abs(s) > MAX_STRENGTH:
        raise ArgumentError(f"strength {s:g} is out of range: use a finite number from -{MAX_STRENGTH:g} to "
                            f"{MAX_STRENGTH:g} (the LOCO reference uses 8)")


def check_out(out: Path, *, many: bool) -> None:
    """``out`` is a .png for one image or a folder for several, somewhere that can be written."""
    if not many and out.suffix.lower() != ".png":
        raise ArgumentError("out must end in .png for a single image (or be a folder for several)", params=("out",))
    if many and out.exists() and not out.is_dir():
        raise ArgumentError(f"out {str(out)!r} is a file, but several images need a folder", params=("out",))
    folder = out if many else out.parent
    try:  # the real test: make the folder and write a file there, as the edit will
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".locobank-", suffix=".probe"):
            pass
    except OSError as e:
        raise ArgumentError(f"cannot write under {str(folder)!r} ({e.strerror or e}): choose an out in a folder you "
                            f"can write", params=("out",)) from e
