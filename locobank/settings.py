"""A model's edit settings, in one place: the defaults its ``locobank.json`` sets, merged under the
options a user gives. This is the only reader of ``locobank.json``.

``locobank.json`` sits beside a model's weights. Every key is optional; keys that start with
``why`` are free-text notes on how a value was measured. Any other key is refused, so a typo
never falls back silently to a default.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import InputError

BASES = ("projected", "constrained")
JACOBIAN_AT = ("inverted", "noised")
SCALE_AXES = ("xy", "x", "y", "none")
DEFAULT_RANK = 5  # directions kept per (image, mask)
DEFAULT_NULL_RANK = 5  # the LOCO reference's k
DEFAULT_T_EDIT = 0.6  # the edit time as a fraction of T: LOCO's te = 0.6T
DEFAULT_STEPS = 50  # DDIM steps between the clean image and the edit time
DEFAULT_GUIDANCE = 7.5  # text-to-image models: Stable Diffusion's classifier-free guidance scale
DEFAULT_STRENGTH = 8.0  # the LOCO reference's lambda (0.5 x 16) on unit directions
# Spill passes with a target mask. Two, by measurement on the toy model: on 20 unseen faces the
# top "blond hair" direction's locality went 0.80 -> 0.91 -> 0.93 -> 0.94 with 0, 1, 2, 3 passes
# and "smile" 0.91 -> 0.97 -> 0.98 -> 0.99, their probe gains within 7 %.
DEFAULT_SPILL_PASSES = 2


@dataclass(frozen=True)
class EditOptions:
    """The options that travel together through every edit: how to sample, and how a transferred
    direction is made local on a new image (null rank, registration, shift, spill passes).

    ``max_shift`` 0 means no whole-pixel shift onto the mask; ``register`` registers directions
    that carry their source part onto the target mask."""

    steps: int = DEFAULT_STEPS
    seed: int = 0
    eta_tail: float = 0.0
    null_rank: int = DEFAULT_NULL_RANK
    max_shift: int = 0
    spill_passes: int = DEFAULT_SPILL_PASSES
    register: bool = True

    def __post_init__(self) -> None:
        _int_in("steps", self.steps, 1, 1000)
        _int_in("null_rank", self.null_rank, 0, 512)
        _int_in("max_shift", self.max_shift, 0, 4096)
        _int_in("spill_passes", self.spill_passes, 0, 16)
        _float_in("eta_tail", self.eta_tail, 0.0, 1.0)

    def but(self, **given: Any) -> "EditOptions":
        """A copy with the options given (None = keep)."""
        return replace(self, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class ModelSettings:
    """Every key a model's ``locobank.json`` may set, with locobank's defaults.

    - ``domain``: the naming vocabulary (``face`` reads ``data/vocab/face.txt``).
    - ``t_edit``, ``t_edit_by_label``: the edit time as a fraction of T, per mask label if set.
    - ``rank``, ``null_rank``, ``basis``, ``jacobian_at``: how harvest finds directions.
    - ``steps``, ``eta_tail``: DDIM steps between the clean image and the edit time; tail noise.
    - ``strength``, ``strength_by_label``: the default edit strength, per mask label if set.
    - ``max_shift``, ``spill_passes``, ``register_scale``, ``register_range``: how ``apply --mask``
      makes a transferred direction local (``register_range`` None: a quarter of the resolution).
    - ``render_steps``: DDIM steps for the effect previews the index embeds.
    - ``resolution``: text-to-image models only: the image side to edit at (None: the model's
      own, e.g. 1024 for SDXL; the pipeline's default for the flow transformers); a multiple of the
      latent grid's cells.
    - ``guidance``: text-to-image models only: the classifier-free guidance scale of the prompt
      that harvest and apply condition on (SD's default 7.5; a flow model's pipeline default
      when this file does not set another).
    - ``dtype``: the precision the model loads in when the caller gives none (fp32, bf16, fp16).
    - ``offload_text``: keep the text encoders on the CPU (they run once per prompt), so the
      accelerator holds only the denoiser and the VAE.
    - ``notes``: the ``why*`` keys, kept as written.
    """

    domain: str | None = None
    t_edit: float = DEFAULT_T_EDIT
    t_edit_by_label: dict = field(default_factory=dict)
    rank: int = DEFAULT_RANK
    null_rank: int = DEFAULT_NULL_RANK
    basis: str = "projected"
    jacobian_at: str = "inverted"
    steps: int = DEFAULT_STEPS
    eta_tail: float = 0.0
    strength: float = DEFAULT_STRENGTH
    strength_by_label: dict = field(default_factory=dict)
    max_shift: int = 0
    spill_passes: int = DEFAULT_SPILL_PASSES
    register_scale: str = "xy"
    register_range: int | None = None
    render_steps: int = 20
    guidance: float = DEFAULT_GUIDANCE
    resolution: int | None = None
    offload_text: bool = False
    dtype: str | None = None
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _float_in("t_edit", self.t_edit, 0.0, 1.0, open_ends=True)
        for label, t in self.t_edit_by_label.items():
            _float_in(f"t_edit_by_label[{label!r}]", t, 0.0, 1.0, open_ends=True)
        _int_in("rank", self.rank, 1, 512)
        _float_in("strength", self.strength, 0.0, 1000.0)
        for label, s in self.strength_by_label.items():
            _float_in(f"strength_by_label[{label!r}]", s, 0.0, 1000.0)
        _int_in("render_steps", self.render_steps, 1, 1000)
        _float_in("guidance", self.guidance, 0.0, 50.0)
        for name, value, allowed in (("basis", self.basis, BASES), ("jacobian_at", self.jacobian_at, JACOBIAN_AT),
                                     ("register_scale", self.register_scale, SCALE_AXES)):
            if value not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.register_range is not None:
            _int_in("register_range", self.register_range, 0, 4096)
        if self.resolution is not None:
            _int_in("resolution", self.resolution, 8, 8192)
        if self.dtype is not None and self.dtype not in ("fp32", "float32", "bf16", "bfloat16", "fp16", "float16"):
            raise InputError(f"dtype must be one of fp32, bf16, fp16, not {self.dtype!r}")
        if not isinstance(self.offload_text, bool):
            raise InputError(f"offload_text must be true or false, not {self.offload_text!r}")
        self.edit_options()  # checks steps, null_rank, max_shift, spill_passes and eta_tail

    @classmethod
    def from_dict(cls, data: dict, source: str = "locobank.json") -> "ModelSettings":
        """Settings from a parsed ``locobank.json``; unknown keys are refused by name."""
        if not isinstance(data, dict):
            raise InputError(f"{source} must hold a JSON object")
        known = {f.name for f in fields(cls)} - {"notes"}
        notes = {k: v for k, v in data.items() if k.startswith("why")}
        unknown = sorted(set(data) - known - set(notes))
        if unknown:
            raise InputError(f"{source}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"known keys: {', '.join(sorted(known))} (and notes named why*)")
        values = {k: v for k, v in data.items() if k in known}
        try:
            return cls(**values, notes=notes)
        except (TypeError, ValueError) as e:
            raise InputError(f"{source}: {e}") from e

    @classmethod
    def load(cls, folder: Path | None, defaults: dict | None = None) -> "ModelSettings":
        """The settings beside a model folder over the family's ``defaults`` (locobank's own where
        neither sets a key)."""
        path = None if folder is None else Path(folder) / "locobank.json"
        if path is None or not path.is_file():
            return cls.from_dict(dict(defaults or {}), "the family's defaults")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not readable JSON ({e})") from e
        if not isinstance(data, dict):
            raise InputError(f"{path} must hold a JSON object")
        return cls.from_dict({**(defaults or {}), **data}, str(path))

    def strength_for(self, mask_label: str | None = None) -> float:
        """The default strength for a direction harvested on ``mask_label``."""
        return float(self.strength_by_label.get(mask_label, self.strength))

    def t_edit_for(self, mask_label: str | None = None) -> float:
        """The edit time (fraction of T) used for masks with this label."""
        return float(self.t_edit_by_label.get(mask_label, self.t_edit))

    def register_range_for(self, resolution: int) -> int:
        """How far registration may move a direction, in pixels of the model's grid."""
        return int(self.register_range) if self.register_range is not None else max(1, resolution // 4)

    def edit_options(self, **given: Any) -> EditOptions:
        """The model's edit options with those given (None = the model's) on top."""
        base = EditOptions(steps=self.steps, eta_tail=self.eta_tail, null_rank=self.null_rank,
                           max_shift=self.max_shift, spill_passes=self.spill_passes)
        return base.but(**given)

    def to_dict(self) -> dict:
        """The settings as ``locobank.json`` would hold them (notes inline)."""
        d = asdict(self)
        notes = d.pop("notes")
        return {**{k: v for k, v in d.items() if v is not None}, **notes}


def edit_times(t_edit: float, by_label: Any = ()) -> str:
    """The edit time as people read it: ``0.3 (mouth 0.4)``, the labels whose time differs from
    ``t_edit`` in brackets (``by_label``: a dict or (label, fraction) pairs)."""
    return f"{t_edit}" + "".join(f" ({k} {v:g})" for k, v in dict(by_label or {}).items() if v != t_edit)


def _int_in(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InputError(f"{name} must be a whole number from {lo} to {hi}, not {value!r}")


def _float_in(name: str, value: Any, lo: float, hi: float, *, open_ends: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (lo < value < hi if open_ends else lo <= value <= hi)
    if not ok:
        rng = f"strictly between {lo:g} and {hi:g}" if open_ends else f"from {lo:g} to {hi:g}"
        raise InputError(f"{name} must be a finite number {rng}, not {value!r}")
