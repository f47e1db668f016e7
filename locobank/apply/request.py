"""`locobank apply` as one library call: an :class:`ApplyRequest`, checked before any work, run
against a catalog into written files and notes that say what was done."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import ArgumentError
from .specs import SPEC, DirectionSpec, expand_images, parse_spec

MAX_STRENGTH = 100.0  # |lambda| on a unit direction; the LOCO reference uses 8, the toy model 4-12


@dataclass
class ApplyRequest:
    """Everything ``locobank apply`` can be asked. ``check()`` validates it all and resolves the
    images, before any model, CLIP or catalog work."""

    images: list[Path]
    out: Path
    specs: list[DirectionSpec] = field(default_factory=list)
    query: str | None = None
    candidates: int = 1
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
            raise ArgumentError("give direction ids or --query, not both")
        if not self.query and not self.specs:
            raise ArgumentError("give at least one direction ID[:STRENGTH] before the images, or --query TEXT")
        if self.candidates > 1 and not self.query:
            raise ArgumentError("--candidates chooses among the hits of --query; give --query too")
        if self.query and len(self.masks) > 1:
            raise ArgumentError("--query applies one direction: give one --mask")
        for s in [self.strength] + [sp.strength for sp in self.specs]:
            check_strength(s)
        if self.sweep is not None:
            if not self.sweep:
                raise ArgumentError("--sweep needs at least one strength, e.g. -8,-4,0,4,8")
            for s in self.sweep:
                check_strength(s)
        if len(self.sources()) > 1 and self.masks:
            raise ArgumentError(f"--mask is one image's mask, but {len(self.sources())} images were given; apply a "
                                f"mask to one image at a time")
        self._check_condition()
        check_out(self.out, many=len(self.sources()) > 1)
        return self

    def _check_condition(self) -> None:
        """Prompt, guidance and seeds: what generation needs, and nothing that cannot work."""
        if self.guidance is not None and not (math.isfinite(self.guidance) and 0 < self.guidance <= 50):
            raise ArgumentError(f"--guidance {self.guidance:g} is out of range: use a number in (0, 50] (SD uses 7.5)")
        if self.negative_prompt and self.prompt is None:
            raise ArgumentError("--negative-prompt goes with --prompt")
        if self.generate:
            if self.images:
                raise ArgumentError("give IMAGE files or --generate SEEDS, not both")
            if self.prompt is None:
                raise ArgumentError("--generate samples a text-to-image model: give --prompt TEXT too")
        elif not self.images:
            raise ArgumentError("give at least one IMAGE after the direction ids (or --generate SEEDS with --prompt)")

    def sources(self) -> list["Path | int"]:
        """What is edited: the image files, or the seeds to generate from."""
        return list(self.generate) if self.generate else list(self.images)

    def condition(self) -> dict | None:
        """The prompt, negative prompt and guidance for a text-to-image model (None: none given)."""
        if self.prompt is None:
            return None
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "guidance": self.guidance}

    def options(self) -> dict:
        """What apply, sweep and the pick share."""
        return dict(mask=list(self.masks) or None, resize=self.resize, seed=self.seed, steps=self.steps,
                    max_shift=self.max_shift, spill_passes=self.spill_passes, register=self.register)


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
        raise ArgumentError("--out must end in .png for a single image (or be a folder for several)")
    if many and out.exists() and not out.is_dir():
        raise ArgumentError(f"--out {out} is a file, but several images need a folder")
    folder = out if many else out.parent
    try:  # the real test: make the folder and write a file there, as the edit will
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".locobank-", suffix=".probe"):
            pass
    except OSError as e:
        raise ArgumentError(f"cannot write under {folder} ({e.strerror or e}): choose an --out in a folder you can "
                         f"write") from e


def split_args(args: Sequence[str]) -> tuple[list[DirectionSpec], list[str]]:
    """Command-line words as direction ids (first) and images (the rest)."""
    specs, images = [], []
    for a in args:
        if not images and SPEC.match(a.strip()) and not Path(a).exists():
            specs.append(parse_spec(a))
        else:
            images.append(a)
    return specs, images


def request_from_args(args: Sequence[str], out: Path, **given) -> ApplyRequest:
    """An :class:`ApplyRequest` from the command line's words, images expanded and all checked."""
    specs, items = split_args(args)
    images = expand_images(items) if items else []
    return ApplyRequest(images=images, out=out, specs=specs, **given).check()
