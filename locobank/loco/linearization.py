"""A model function linearised at one state: ``J^T u`` from one reverse-mode linearisation
(``torch.func.vjp``) reused across calls, and batched ``J v`` either by forward-mode AD
(``torch.func.jvp`` under ``vmap``) or as the derivative of that linear map ``u -> J^T u``, itself
linearised once and reused (:data:`JVP_MODE`); ``J^T u`` of several rows as one backward pass through a
batch of copies of the state (:data:`VJP_MODE`). Attention runs on PyTorch's math SDPA kernel while
tangents flow, since the fused CPU kernels have no forward-mode formula.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, Hashable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# How ``J v`` is computed: "forward" (forward-mode AD, which runs the model's forward pass again with
# tangents each call), "reverse" (the derivative of ``u -> J^T u``, linearised once per state and
# reused: each call is one pass back through the backward graph), or "auto": on the CPU, the faster
# of the two, timed on the first call (and remembered per model, see ``key``); forward elsewhere.
# Measured on the 2-core CPU (docs/performance.md): on the toy models' 32-pixel UNets forward mode
# costs a fixed ~0.06 s a call (per-operation overhead), the reused reverse map ~0.01 s, so J v of
# 2-3 vectors took 2.1-2.4 times less time in reverse; on the ddpm-celebahq-256 architecture at 64²,
# where the arithmetic dominates, reverse took 1.8 times longer and 0.23 GiB more. The same numbers
# to 1e-6 either way. On a GPU forward mode is the measured path (the H200 figures), and the reverse
# map would hold the backward pass's own graph in GPU memory.
JVP_MODE = "auto"
JVP_MODES = ("auto", "forward", "reverse")
_CHOSEN: dict[Hashable, bool] = {}  # auto's choice per (key, state shape, dtype, device): reverse or not

# How ``J^T u`` is computed for a chunk of k rows: "vmap" (the one state's reverse-mode linearisation
# under ``vmap``: one recorded forward pass, its backward batched by vmap's rules), "batched" (the
# state repeated k times and passed forward once as a batch, its graph kept and reused: each call is
# one plain backward pass of a batch of k), or "auto": batched on the CPU, vmap elsewhere (a batched
# graph holds k copies of the forward pass's activations: VJP_GRAPH_BYTES bounds them). Measured on the 2-core
# CPU (docs/performance.md): on the toy DDPM, 2 / 4 / 8 rows took 1.45 / 1.23 / 1.32 times less time
# batched, the same numbers to 2e-5.
VJP_MODE = "auto"
VJP_MODES = ("auto", "vmap", "batched")
# A batched graph holds what the forward pass saves for its backward, once per copy: a chunk whose
# copies would save more than this (measured on one copy: about 11 MiB on the toy DDPM, gigabytes on
# SD-sized models) goes through the vmapped path, which saves it once.
VJP_GRAPH_BYTES = 1 << 30


def resolve_jvp_mode(mode: str | None, device: torch.device) -> str:
    """``mode`` (None: :data:`JVP_MODE`) for ``device``: "forward", "reverse", or "auto" where the
    choice is timed (the CPU)."""
    mode = JVP_MODE if mode is None else mode
    if mode not in JVP_MODES:
        raise ValueError(f"the J v mode must be one of {', '.join(JVP_MODES)}, not {mode!r}")
    if mode == "auto" and torch.device(device).type != "cpu":
        return "forward"
    return mode


def resolve_vjp_mode(mode: str | None, device: torch.device) -> str:
    """``mode`` (None: :data:`VJP_MODE`) for ``device``: "vmap" or "batched"."""
    mode = VJP_MODE if mode is None else mode
    if mode not in VJP_MODES:
        raise ValueError(f"the J^T u mode must be one of {', '.join(VJP_MODES)}, not {mode!r}")
    if mode == "auto":
        return "batched" if torch.device(device).type == "cpu" else "vmap"
    return mode


@contextlib.contextmanager
def _setting(name: str, mode: str, resolve: Callable[[str, torch.device], str]):
    """The module setting ``name`` set to ``mode`` (checked by ``resolve``) inside the ``with``, and back after."""
    resolve(mode, torch.device("cpu"))
    shipped = globals()[name]
    globals()[name] = mode
    try:
        yield
    finally:
        globals()[name] = shipped


def vjp_mode(mode: str):
    """:data:`VJP_MODE` set to ``mode`` inside the ``with``, and back after: how the benchmarks run
    the vmapped path beside the shipped one."""
    return _setting("VJP_MODE", mode, resolve_vjp_mode)


def jvp_mode(mode: str):
    """:data:`JVP_MODE` set to ``mode`` inside the ``with``, and back after: how the benchmarks run
    the forward-mode path beside the shipped one."""
    return _setting("JVP_MODE", mode, resolve_jvp_mode)


def math_attention():
    """Context in which scaled_dot_product_attention uses its differentiable math path."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])
    except ImportError:  # pragma: no cover - older torch
        return contextlib.nullcontext()


class Linearization:
    """``fn`` linearised at ``x``: batched ``J v`` and ``J^T u`` in chunks of at most ``chunk``;
    ``mode``: how ``J v`` is computed (None: :data:`JVP_MODE`); ``key``: what identifies ``fn``'s
    model (its fingerprint), so that auto's timed choice is made once per model, not per state."""

    def __init__(self, fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int = 16, mode: str | None = None,
                 key: Hashable | None = None):
        self.fn = fn
        self.x = x.detach()
        self.chunk = max(1, int(chunk))
        with math_attention():
            out, self._vjp = torch.func.vjp(fn, self.x)
        self.out = out.detach()
        self.jvp_calls = 0
        self.vjp_calls = 0
        mode = resolve_jvp_mode(mode, self.x.device)
        self._memo = None if key is None else (key, tuple(self.x.shape), self.x.dtype, str(self.x.device))
        # J v in reverse mode (chosen, timed faster, or since forward-mode AD failed); None: not timed yet
        self.reverse_jvp: bool | None = mode == "reverse" if mode != "auto" else _CHOSEN.get(self._memo)
        self._transpose = None  # the linear map v -> J v, as the VJP of u -> J^T u (built on first use)
        self.batched_vjp = resolve_vjp_mode(None, self.x.device) == "batched"
        self._graphs: dict[int, tuple[Tensor, Tensor]] = {}  # k -> (k copies of x, their outputs): batched J^T u
        self._copy_bytes: int | None = None  # what one copy's forward graph saves (measured on first use)

    def _chunks(self, T: Tensor):
        for i in range(0, T.shape[0], self.chunk):
            yield T[i : i + self.chunk]

    def jvp(self, V: Tensor) -> Tensor:
        """``J v`` for each row of ``V`` (k, *x.shape) -> (k, *out.shape).

        In reverse mode, as the derivative of the linear map ``u -> J^T u``, linearised once. In
        forward mode where the model's ops support it; where one does not (no forward formula, or
        one that mixes dtypes, as layer norm's does in bf16 on some CUDA builds), in reverse mode
        instead (the same numbers), and the log says so once. Under "auto" on the CPU the first
        chunk for a model runs both ways, twice, timed, and the faster one serves from then on."""
        outs = []
        with math_attention():
            for c in self._chunks(V):
                outs.append((self._timed_choice(c) if self.reverse_jvp is None else self._jvp_chunk(c)).detach())
        self.jvp_calls += V.shape[0]
        return torch.cat(outs)

    def _timed_choice(self, V: Tensor) -> Tensor:
        """``J v`` of one chunk both ways, each once untimed (a first call pays one-off set-up) and
        once timed; the faster way is kept (the reverse map's build not counted: it serves every
        later call on this state)."""
        try:
            out = torch.func.vmap(self._forward_one)(V)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError:
            self.reverse_jvp = False
            return self._jvp_chunk(V)  # forward mode fails here: the fallback says so
        self._build_transpose()
        torch.func.vmap(self._reverse_one)(V)
        seconds = []
        for one in (self._forward_one, self._reverse_one):
            start = time.perf_counter()
            torch.func.vmap(one)(V)
            seconds.append(time.perf_counter() - start)
        self.reverse_jvp = seconds[1] < seconds[0]
        if self._memo is not None:
            _CHOSEN[self._memo] = self.reverse_jvp
        return out

    def _jvp_chunk(self, V: Tensor) -> Tensor:
        if not self.reverse_jvp:
            try:
                return torch.func.vmap(self._forward_one)(V)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as e:
                self.reverse_jvp = True
                _falling_back("forward-mode AD failed through this model", e, "computing J v in reverse mode")
        self._build_transpose()
        return torch.func.vmap(self._reverse_one)(V)

    def _build_transpose(self) -> None:
        if self._transpose is None:  # built here, outside vmap, once per state
            _, self._transpose = torch.func.vjp(lambda u: self._vjp(u)[0], torch.zeros_like(self.out))

    def _forward_one(self, v: Tensor) -> Tensor:
        return torch.func.jvp(self.fn, (self.x,), (v,))[1]

    def _reverse_one(self, v: Tensor) -> Tensor:
        # u -> J^T u is linear, so its own VJP at any u, applied to v, is (J^T)^T v = J v.
        return self._transpose(v)[0]

    def vjp(self, U: Tensor) -> Tensor:
        """``J^T u`` for each row of ``U`` (k, *out.shape) -> (k, *x.shape), batched or under vmap
        (:data:`VJP_MODE`)."""
        outs = []
        with math_attention():
            for c in self._chunks(U):
                one = self._batched_vjp(c) if self.batched_vjp else None
                outs.append((torch.func.vmap(self._vjp)(c)[0] if one is None else one).detach())
        self.vjp_calls += U.shape[0]
        return torch.cat(outs)

    def _batched_vjp(self, U: Tensor) -> Tensor | None:
        """``J^T u`` for a chunk as one backward pass through a batch of ``len(U)`` copies of the
        state, whose forward graph is made on first use and kept (the two latest sizes). None where
        the copies' saved activations would pass :data:`VJP_GRAPH_BYTES` (measured on one copy
        first), or where ``fn`` cannot run under vmap (said once): the vmapped path then serves."""
        k = U.shape[0]
        if self._copy_bytes is None:
            self._copy_bytes = self._graph(1)  # the layers' saved parameters included: an upper bound per copy
            if self._copy_bytes is None:
                return None
        if k * self._copy_bytes > VJP_GRAPH_BYTES or (k not in self._graphs and self._graph(k) is None):
            return None
        xs, ys = self._graphs[k]
        return torch.autograd.grad(ys, xs, U.to(ys.dtype), retain_graph=True)[0]

    def _graph(self, k: int) -> int | None:
        """The forward graph of ``k`` copies of the state, kept (at most two sizes); returns the bytes
        its saved tensors take, None where it cannot be made."""
        saved = [0]

        def pack(t: Tensor) -> Tensor:
            saved[0] += t.numel() * t.element_size()
            return t

        try:
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                xs = self.x.expand(k, *self.x.shape).clone().requires_grad_(True)
                ys = torch.func.vmap(self.fn)(xs)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as e:
            self.batched_vjp = False
            _falling_back("this model cannot run as a batch of copies", e, "computing J^T u under vmap")
            return None
        while len(self._graphs) >= 2:
            self._graphs.pop(next(iter(self._graphs)))
        self._graphs[k] = (xs, ys)
        return saved[0]


def _falling_back(what: str, e: RuntimeError, instead: str) -> None:
    """Say once, in the log, that a path failed (with the error's first line) and what serves instead."""
    log.warning("%s (%s); %s", what, str(e).splitlines()[0][:200], instead)


__all__ = ["JVP_MODE", "JVP_MODES", "VJP_MODE", "VJP_MODES", "Linearization", "jvp_mode", "math_attention",
           "resolve_jvp_mode", "resolve_vjp_mode", "vjp_mode"]
