"""Direction packs: one safetensors file that carries directions and their provenance to another catalog.

Layout: tensors ``direction.<id>`` (ids of the exporting catalog) and, in the header's
``__metadata__``, ``format`` = ``locobank.pack/2``, ``locobank_version``, ``directions`` (a JSON list
with one object per tensor: model, image, mask, run, rank, singular value, t_edit, null rank, labels,
and the sha256 of the tensor bytes) and ``seal``: the sha256 of all of that in canonical JSON. The
seal covers the provenance as the tensor hashes cover the tensors, so an edited header (t_edit,
singular value, image) or an edited tensor is refused before anything is imported. It detects edits
and corruption, not who made them (anyone can reseal a file): compare a pack's seal with the one its
author published when that matters.

A pack carries what identifies the model and the images, never this machine's paths: the model's
fingerprint, id and revision (a Hub id, or ``local:NAME``), its config less path-valued entries, and
each image's sha256 and file name. Packs of format ``locobank.pack/1`` (older locobank) carry no seal
and are refused: accepting them would let anyone strip the seal from a pack by relabelling it.
"""

from __future__ import annotations

import json
import ntpath
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from locobank import __version__
from locobank.catalog.canonical import canonical_json, params_hash, run_identity
from locobank.catalog.safetensors_io import RawTensor, decode, encode, sha256_hex
from locobank.catalog.schema import MODEL_KINDS
from locobank.errors import InputError, PackError

PACK_FORMAT = "locobank.pack/2"
OLD_FORMATS = ("locobank.pack/1",)
MAX_PACK_BYTES = 8 << 30
IMPORTED_PREFIX = "pack:"  # image uri of an image a catalog knows only from a pack: found by nothing
_PATH_KEYS = ("_name_or_path", "name_or_path")


def _is_local_path(value: str) -> bool:
    """A path on some machine (absolute, home- or dot-relative), as opposed to a Hub id or a name."""
    return (
        os.path.isabs(value)
        or ntpath.isabs(value)
        or value.startswith(("~", "./", "../", ".\\", "..\\", "file:"))
        or re.match(r"^[A-Za-z]:[\\/]", value) is not None
    )


def portable(value: Any) -> Any:
    """``value`` without this machine's paths: entries that hold a local path are dropped."""
    if isinstance(value, dict):
        return {
            k: portable(v)
            for k, v in value.items()
            if k not in _PATH_KEYS and not (isinstance(v, str) and _is_local_path(v))
        }
    if isinstance(value, list):
        return [portable(v) for v in value if not (isinstance(v, str) and _is_local_path(v))]
    return value


def file_name(uri: str) -> str:
    """The base name of a stored path (POSIX or Windows), or of an imported image's ``pack:NAME``."""
    name = uri[len(IMPORTED_PREFIX) :] if uri.startswith(IMPORTED_PREFIX) else uri
    return PurePath(ntpath.basename(name)).name


def describe(d: Any, m: Any, run: Any, image: Any, mask: Any, condition: dict | None = None) -> dict[str, Any]:
    """The provenance of one direction as it travels in a pack (ORM rows in, plain dict out);
    ``condition`` is its job's (prompt, guidance, seed ... of a text-to-image model; None for pixel models)."""
    params = run_identity(dict(run.params))
    return {
        "id": d.id,
        "tensor": f"direction.{d.id}",
        "dtype": None,  # filled by encode_pack from the tensor itself
        "shape": list(d.shape),
        "sha256": None,
        "model": {
            "model_id": m.model_id,
            "revision": m.revision,
            "fingerprint": m.fingerprint,
            "resolution": m.resolution,
            "channels": m.channels,
            "kind": m.kind,
            "config": portable(m.config),
        },
        "image": {
            "sha256": image.sha256,
            "name": file_name(image.uri),
            "width": image.width,
            "height": image.height,
            "channels": image.channels,
        },
        "mask": {"label": mask.label, "sha256": mask.sha256, "area": mask.area},
        "condition": dict(condition) if condition else None,
        "run": {"params": params, "params_hash": params_hash(params), "locobank_version": run.locobank_version},
        "rank_index": d.rank_index,
        "singular_value": d.singular_value,
        "t_edit": d.t_edit,
        "t_edit_frac": d.t_edit_frac,
        "null_rank": d.null_rank,
        "norm": d.norm,
        "diagnostics": portable(d.diagnostics),
        "label": d.label,
        "label_score": d.label_score,
        "label_sign": d.label_sign,
        "created_at": d.created_at.isoformat() if d.created_at else None,
    }


def seal(version: str, described: list[dict[str, Any]]) -> str:
    """The sha256 of a pack's whole provenance (format, version, every entry with its tensor hash)."""
    whole = {"format": PACK_FORMAT, "locobank_version": version, "directions": described}
    return sha256_hex(canonical_json(whole).encode())


def encode_pack(entries: list[tuple[dict[str, Any], RawTensor]]) -> bytes:
    """The pack's bytes: each tensor, the JSON list that describes them all, and the seal over it."""
    described = []
    for entry, raw in entries:
        described.append(dict(entry, dtype=raw.dtype, shape=list(raw.shape), sha256=raw.sha256))
    metadata = {
        "format": PACK_FORMAT,
        "locobank_version": __version__,
        "directions": canonical_json(described),
        "seal": seal(__version__, described),
    }
    return encode([(e["tensor"], raw) for e, (_, raw) in zip(described, entries, strict=False)], metadata)


def pack_seal(path: Path) -> str:
    """The seal of a pack file as written (for ``export`` to print), without checking it."""
    metadata, _ = decode(Path(path).read_bytes(), f"pack {path}", error=PackError)
    return metadata.get("seal", "")


# -- reading -------------------------------------------------------------------------------------


def _field(where: str, obj: dict[str, Any], key: str, check: Callable[[Any], bool], kind: str) -> Any:
    """One required field, type-checked, or a ``PackError`` naming it."""
    if key not in obj:
        raise PackError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not check(value):
        raise PackError(f"{where}: field {key!r} should be {kind}, got {value!r:.80}")
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and v == v and abs(v) != float("inf")


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_hex(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) == n and all(c in "0123456789abcdef" for c in v)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _section(
    where: str, obj: dict[str, Any], key: str, spec: dict[str, tuple[Callable[[Any], bool], str]]
) -> dict[str, Any]:
    """A nested object with exactly the fields the importer uses, each type-checked."""
    sub = _field(where, obj, key, _is_dict, "an object")
    return {k: _field(f"{where}.{key}", sub, k, check, kind) for k, (check, kind) in spec.items()}


_MODEL = {
    "model_id": (_is_str, "a string"),
    "revision": (_is_opt_str, "a string or null"),
    "fingerprint": (_is_hex(16), "16 hex characters"),
    "resolution": (_is_int, "an integer"),
    "channels": (_is_int, "an integer"),
    "kind": (lambda v: v in MODEL_KINDS, f"one of {MODEL_KINDS}"),
    "config": (_is_dict, "an object"),
}
_IMAGE = {
    "sha256": (_is_hex(64), "a sha256 hex digest"),
    "name": (lambda v: isinstance(v, str) and v == file_name(v) and v not in ("", ".", ".."), "a file name"),
    "width": (_is_int, "an integer"),
    "height": (_is_int, "an integer"),
    "channels": (_is_int, "an integer"),
}
_MASK = {
    "label": (_is_str, "a string"),
    "sha256": (_is_hex(64), "a sha256 hex digest"),
    "area": (_is_int, "an integer"),
}
_RUN = {
    "params": (_is_dict, "an object"),
    "params_hash": (_is_hex(64), "a sha256 hex digest"),
    "locobank_version": (_is_str, "a string"),
}
_DIRECTION = {
    "id": (_is_int, "an integer"),
    "tensor": (_is_str, "a string"),
    "dtype": (_is_str, "a string"),
    "shape": (lambda v: isinstance(v, list) and all(_is_int(s) and s >= 0 for s in v), "a list of sizes"),
    "sha256": (_is_hex(64), "a sha256 hex digest"),
    "rank_index": (_is_int, "an integer"),
    "singular_value": (_is_num, "a number"),
    "t_edit": (_is_int, "an integer"),
    "t_edit_frac": (_is_num, "a number"),
    "null_rank": (_is_int, "an integer"),
    "norm": (_is_num, "a number"),
    "diagnostics": (_is_dict, "an object"),
    "label": (_is_opt_str, "a string or null"),
    "label_score": (lambda v: v is None or _is_num(v), "a number or null"),
    "label_sign": (lambda v: v in (None, -1, 1), "-1, 1 or null"),
    "condition": (lambda v: v is None or (isinstance(v, dict) and bool(v)), "an object or null"),
}


def _check_entry(i: int, entry: Any, tensors: dict[str, RawTensor]) -> tuple[dict[str, Any], RawTensor]:
    """Validate one direction's description against its tensor."""
    where = f"pack direction #{i}"
    if not isinstance(entry, dict):
        raise PackError(f"{where}: not a JSON object")
    out = {k: _field(where, entry, k, check, kind) for k, (check, kind) in _DIRECTION.items()}
    out["model"] = _section(where, entry, "model", _MODEL)
    out["image"] = _section(where, entry, "image", _IMAGE)
    out["mask"] = _section(where, entry, "mask", _MASK)
    out["run"] = _section(where, entry, "run", _RUN)
    try:
        recomputed = params_hash(out["run"]["params"])
    except InputError as e:
        raise PackError(f"{where}: run params are not plain JSON ({e})") from e
    if recomputed != out["run"]["params_hash"]:
        raise PackError(f"{where}: run params do not match their params_hash (metadata was edited)")
    raw = tensors.get(out["tensor"])
    if raw is None:
        raise PackError(f"{where}: tensor {out['tensor']!r} is not in the file")
    if list(raw.shape) != out["shape"] or raw.dtype != out["dtype"]:
        found, said = f"{raw.dtype}{list(raw.shape)}", f"{out['dtype']}{out['shape']}"
        raise PackError(f"{where}: tensor {out['tensor']!r} is {found}, metadata says {said}")
    if raw.sha256 != out["sha256"]:
        raise PackError(f"{where}: tensor {out['tensor']!r} does not match its sha256 (tampered or corrupted)")
    return out, raw


def _metadata(path: Path) -> tuple[dict[str, str], dict[str, RawTensor]]:
    """The header metadata and tensors of a pack file of this format; refuses anything else."""
    what = f"pack {path}"
    try:
        size = path.stat().st_size
        if size > MAX_PACK_BYTES:
            raise PackError(f"{what} is {size} bytes, more than the {MAX_PACK_BYTES}-byte limit")
        blob = path.read_bytes()
    except OSError as e:
        raise PackError(f"cannot read {what}: {e.strerror or e}") from e
    metadata, tensors = decode(blob, what, error=PackError)
    fmt = metadata.get("format")
    if fmt in OLD_FORMATS:
        raise PackError(
            f"{what} was written by an older locobank (format {fmt}): its provenance is not sealed, so an "
            f"edited header could not be told from the original, and it carries the exporting machine's "
            f"paths; nothing was imported. Export the directions again with locobank {__version__} or later."
        )
    if fmt != PACK_FORMAT:
        raise PackError(f"{what} is a safetensors file but not a locobank pack (format {fmt!r})")
    if not _is_hex(64)(metadata.get("seal")):
        raise PackError(f"{what} has no valid seal over its provenance; nothing was imported")
    return metadata, tensors


def read_pack(path: Path) -> list[tuple[dict[str, Any], RawTensor]]:
    """Parse and fully validate a pack file; raises ``PackError`` saying what is wrong."""
    what = f"pack {path}"
    metadata, tensors = _metadata(path)
    try:
        described = json.loads(metadata.get("directions", ""))
    except json.JSONDecodeError as e:
        raise PackError(f"{what}: the 'directions' metadata is not valid JSON ({e})") from e
    if not isinstance(described, list) or not described:
        raise PackError(f"{what}: the 'directions' metadata must be a non-empty list")
    entries = [_check_entry(i, entry, tensors) for i, entry in enumerate(described)]
    names = [e["tensor"] for e, _ in entries]
    if len(set(names)) != len(names) or set(names) != set(tensors):
        raise PackError(f"{what}: tensors and their descriptions do not match one to one")
    keys = [
        (
            e["model"]["fingerprint"],
            e["image"]["sha256"],
            e["mask"]["sha256"],
            e["mask"]["label"],
            canonical_json(e["condition"]),
            e["run"]["params_hash"],
            e["rank_index"],
        )
        for e, _ in entries
    ]
    if len(set(keys)) != len(keys):
        raise PackError(f"{what}: two directions claim the same job and rank")
    version = metadata.get("locobank_version", "")
    try:
        sealed = seal(version, described)
    except InputError as e:
        raise PackError(f"{what}: the provenance is not plain JSON ({e})") from e
    if sealed != metadata["seal"]:
        raise PackError(
            f"{what}: its provenance does not match its seal: the header (t_edit, singular value, image, "
            f"model, labels ...) was edited after export, or the file is corrupted; nothing was imported"
        )
    return entries
