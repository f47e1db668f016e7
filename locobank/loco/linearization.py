"""A model function linearised at one state: batched ``J v`` by forward-mode AD (``torch.func.jvp``
under ``vmap``) and ``J^T u`` from one reverse-mode linearisation (``torch.func.vjp``) reused
across calls. Attention runs on PyTorch's math SDPA kernel while tangents flow, since the fused
CPU kernels have no forward-mode formula.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def math_attention():
    """Context in which scaled_dot_product_attention uses its differentiable math path."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])
    except ImportError:  # pragma: no cover - older torch
        return contextlib.nullcontext()


class Linearization:
    """``fn`` linearised at ``x``: batched ``J v`` and ``J^T u`` in chunks of at most ``chunk``."""

    def __init__(self, fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int = 16):
        self.fn = fn
        self.x = x.detach()
        self.chunk = max(1, int(chunk))
        with math_attention():
            out, self._vjp = torch.func.vjp(fn, self.x)
        self.out = out.detach()
        self.jvp_calls = 0
        self.vjp_calls = 0
        self.reverse_jvp = False  # set once forward-mode AD has failed through fn

    def _chunks(self, T: Tensor):
        for i in range(0, T.shape[0], self.chunk):
            yield T[i : i + self.chunk]

    def jvp(self, V: Tensor) -> Tensor:
        """``J v`` for each row of ``V`` (k, *x.shape) -> (k, *out.shape).

        Forward-mode AD where the model's ops support it; where one does not (no forward formula,
        or one that mixes dtypes, as layer norm's does in bf16 on some CUDA builds), ``J v`` comes
        from reverse mode instead, as the derivative of the linear map ``u -> J^T u`` (slower, the
        same numbers), and the log says so once."""
        outs = []
        with math_attention():
            for c in self._chunks(V):
                outs.append(self._jvp_chunk(c).detach())
        self.jvp_calls += V.shape[0]
        return torch.cat(outs)

    def _jvp_chunk(self, V: Tensor) -> Tensor:
        if not self.reverse_jvp:
            try:
                return torch.func.vmap(self._forward_one)(V)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as e:
                self.reverse_jvp = True
                log.warning("forward-mode AD failed through this model (%s); computing J v in reverse mode",
                            str(e).splitlines()[0][:200])
        return torch.func.vmap(self._reverse_one)(V)

    def _forward_one(self, v: Tensor) -> Tensor:
        return torch.func.jvp(self.fn, (self.x,), (v,))[1]

    def _reverse_one(self, v: Tensor) -> Tensor:
        # u -> J^T u is linear, so its own VJP at any u, applied to v, is (J^T)^T v = J v.
        _, back = torch.func.vjp(lambda u: self._vjp(u)[0], torch.zeros_like(self.out))
        return back(v)[0]

    def vjp(self, U: Tensor) -> Tensor:
        """``J^T u`` for each row of ``U`` (k, *out.shape) -> (k, *x.shape)."""
        outs = []
        with math_attention():
            for c in self._chunks(U):
                outs.append(torch.func.vmap(self._vjp)(c)[0].detach())
        self.vjp_calls += U.shape[0]
        return torch.cat(outs)


__all__ = ["Linearization", "math_attention"]
