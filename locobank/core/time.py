"""The edit time, resolved once: an integer timestep and the fraction of T it stands for.

One name everywhere, ``t_edit``. What a user gives (``--t-edit``, ``locobank.json``, harvest
parameters) is a fraction of T or a timestep; :meth:`EditTime.of` resolves it once, and from then on
``t_edit`` is the integer timestep (``Direction.t_edit``, ``EditResult.t_edit``, catalog rows, hits,
packs), with the fraction stored beside it as ``t_edit_frac``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True, order=True)
class EditTime:
    """An edit time of a model with ``total`` timesteps: ``step`` is what the sampler uses,
    ``fraction`` (step / total) is what users type and the catalog stores beside it."""

    step: int
    total: int

    @property
    def fraction(self) -> float:
        return self.step / self.total

    @classmethod
    def of(cls, total: int, value: "float | int | EditTime") -> "EditTime":
        """A fraction of T (0.6) or an integer timestep (600) as an :class:`EditTime`."""
        if isinstance(value, EditTime):
            if value.total != total:
                raise InputError(f"edit time {value.step}/{value.total} belongs to a model with {value.total} "
                                 f"timesteps, not {total}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"an edit time must be a fraction in (0, 1) or a timestep, not {value!r}")
        if isinstance(value, float) or 0 < value < 1:
            if not 0.0 < float(value) < 1.0:
                raise InputError(f"t_edit as a fraction must lie in (0, 1), got {value}")
            return cls(max(1, min(total - 1, int(round(float(value) * total)))), total)
        if not 1 <= int(value) < total:
            raise InputError(f"t_edit must be a timestep in [1, {total - 1}] or a fraction in (0, 1), got {value}")
        return cls(int(value), total)


def to_timestep(model, t_edit: "float | int | EditTime") -> int:
    """The integer timestep of ``t_edit`` (a fraction of T, a timestep or an :class:`EditTime`)."""
    return EditTime.of(model.denoiser.num_timesteps, t_edit).step
