"""A strict safetensors reader and a canonical writer, working on bytes (no torch, no pickle).

Why not ``safetensors.serialize``: the library writes ``__metadata__`` in hash-map order, which
changes from process to process, so the same direction would get a different content address in
every worker. This writer emits sorted, compact JSON, so equal content gives equal bytes. Files it
writes are ordinary safetensors files; the library reads them (the tests check that).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from locobank.errors import InputError, IntegrityError

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
MAX_HEADER = 100_000_000  # the safetensors library's own limit
_ALIGN = 8


@dataclass(frozen=True)
class RawTensor:
    """A tensor as little-endian bytes plus dtype and shape, the unit every codec here moves."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @property
    def sha256(self) -> str:
        """Hash of the raw tensor bytes, the integrity check recorded beside every vector."""
        return hashlib.sha256(self.data).hexdigest()


def sha256_hex(data: bytes) -> str:
    """Hex sha256, used as content address for blobs."""
    return hashlib.sha256(data).hexdigest()


def to_raw(vector: Any) -> tuple[RawTensor, float]:
    """Turn a torch tensor or numpy array into raw bytes and its L2 norm, refusing non-finite values."""
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        raise InputError("locobank stores vectors little-endian and needs a little-endian host")
    if type(vector).__module__.split(".")[0] == "torch":
        import torch

        t = vector.detach().to("cpu").contiguous()
        names = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
        if t.dtype not in names:
            raise InputError(f"direction vectors must be floating point, got {t.dtype}")
        wide = t.double()
        if not bool(torch.isfinite(wide).all()):
            raise InputError("direction vector has NaN or infinite values")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        return RawTensor(names[t.dtype], tuple(int(s) for s in t.shape), data), float(wide.norm())
    import numpy as np

    a = np.asarray(vector)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):
        raise InputError(f"direction vectors must be float16/32/64 arrays, got {a.dtype}")
    wide = a.astype(np.float64)
    if not np.isfinite(wide).all():
        raise InputError("direction vector has NaN or infinite values")
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    name = {2: "F16", 4: "F32", 8: "F64"}[a.dtype.itemsize]
    return RawTensor(name, tuple(int(s) for s in a.shape), a.tobytes()), float(np.linalg.norm(wide))


def encode(tensors: Sequence[tuple[str, RawTensor]], metadata: Mapping[str, str]) -> bytes:
    """Canonical safetensors bytes: sorted compact JSON header, tensors in the given order."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name, raw in tensors:
        if name == "__metadata__" or name in header:
            raise InputError(f"bad or repeated tensor name {name!r}")
        end = offset + len(raw.data)
        header[name] = {"dtype": raw.dtype, "shape": list(raw.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-(8 + len(text)) % _ALIGN)
    return b"".join([struct.pack("<Q", len(text)), text, *(raw.data for _, raw in tensors)])


def decode(
    blob: bytes, what: str = "blob", error: type[IntegrityError] = IntegrityError
) -> tuple[dict[str, str], dict[str, RawTensor]]:
    """Parse safetensors bytes strictly, raising ``error`` for anything malformed or truncated."""
    if len(blob) < 8:
        raise error(f"{what} is not a safetensors file: only {len(blob)} bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise error(f"{what} is not a safetensors file or is truncated: header of {n} bytes in a {len(blob)}-byte file")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{what} is not a safetensors file: unreadable header ({e})") from e
    if not isinstance(header, dict):
        raise error(f"{what} is not a safetensors file: header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise error(f"{what} has malformed metadata: it must map strings to strings")
    buffer = memoryview(blob)[8 + n :]
    entries = []
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError, ValueError) as e:
            raise error(f"{what}: tensor {name!r} has a malformed header entry") from e
        if dtype not in ITEMSIZE:
            raise error(f"{what}: tensor {name!r} has dtype {dtype!r}; only float tensors are accepted")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise error(f"{what}: tensor {name!r} has a malformed shape {shape!r}")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
            raise error(f"{what}: tensor {name!r} has malformed data offsets")
        if end - begin != math.prod(shape) * ITEMSIZE[dtype]:
            raise error(f"{what}: tensor {name!r} has {end - begin} bytes, which does not fit shape {shape} of {dtype}")
        entries.append((begin, end, name, dtype, tuple(shape)))
    entries.sort()
    position = 0
    for begin, end, name, *_ in entries:
        if begin != position:
            raise error(f"{what}: tensor {name!r} overlaps another or leaves a gap")
        position = end
    if position != len(buffer):
        raise error(
            f"{what} is truncated or has trailing bytes: data is {len(buffer)} bytes, header describes {position}"
        )
    tensors = {name: RawTensor(dtype, shape, bytes(buffer[b:e])) for b, e, name, dtype, shape in entries}
    return metadata, tensors


VECTOR_FORMAT = "locobank.vector/1"


def encode_vector(raw: RawTensor, fingerprint: str) -> bytes:
    """One direction as a one-tensor safetensors blob that names its model and its own hash."""
    metadata = {
        "format": VECTOR_FORMAT,
        "fingerprint": fingerprint,
        "shape": json.dumps(list(raw.shape)),
        "dtype": raw.dtype,
        "sha256": raw.sha256,
    }
    return encode([("direction", raw)], metadata)


def verify_vector(blob: bytes, address: str, fingerprint: str | None, what: str) -> RawTensor:
    """Check a stored vector's address, tensor hash, shape and fingerprint; the only way vectors are read."""
    from locobank.errors import FingerprintMismatch

    if sha256_hex(blob) != address:
        raise IntegrityError(f"{what} is corrupted: its stored bytes do not hash to {address[:12]}…")
    metadata, tensors = decode(blob, what)
    raw = tensors.get("direction")
    if raw is None or len(tensors) != 1 or metadata.get("format") != VECTOR_FORMAT:
        raise IntegrityError(f"{what} is not a locobank vector blob")
    if metadata.get("sha256") != raw.sha256:
        raise IntegrityError(f"{what} is corrupted: tensor bytes do not match the sha256 in its metadata")
    if metadata.get("shape") != json.dumps(list(raw.shape)) or metadata.get("dtype") != raw.dtype:
        raise IntegrityError(f"{what} has metadata that disagrees with its tensor's shape or dtype")
    if fingerprint is not None and metadata.get("fingerprint") != fingerprint:
        raise FingerprintMismatch(
            f"{what} belongs to model fingerprint {metadata.get('fingerprint')}, not {fingerprint}"
        )
    return raw


def raw_to_torch(raw: RawTensor) -> Any:
    """A torch tensor (a copy, writable) from raw bytes; torch is imported only here."""
    import torch

    dtype = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[raw.dtype]
    flat = torch.frombuffer(bytearray(raw.data), dtype=torch.uint8)
    return flat.view(dtype).reshape(raw.shape).clone() if raw.data else torch.empty(raw.shape, dtype=dtype)
