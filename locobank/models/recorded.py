"""Finding the diffusion model a catalog direction belongs to, and refusing the wrong one."""

from __future__ import annotations

from functools import lru_cache

from ..errors import FingerprintMismatch, ModelLoadError
from . import LoadedModel, load_model


@lru_cache(maxsize=4)
def _load(source: str, device: str | None) -> LoadedModel:
    return load_model(source, device=device)


def model_for(catalog, fingerprint: str, *, override: str | None = None, device: str | None = None) -> LoadedModel:
    """The model with this fingerprint: ``override`` if given, else the source recorded at harvest time.

    Raises FingerprintMismatch when the model found is not the one the direction was made with.
    """
    rec = catalog.get_model(fingerprint)
    source = override or (rec.config or {}).get("source")
    if not source:
        raise ModelLoadError(f"the catalog does not record where model {rec.model_id} came from; pass --model")
    try:
        lm = _load(str(source), device)
    except ModelLoadError as e:
        hint = ("check the --model you gave" if override else
                f"the direction was harvested with {rec.model_id} from {source}; pass --model to point at it")
        raise ModelLoadError(f"{e}; {hint}") from e
    if lm.fingerprint != fingerprint:
        raise FingerprintMismatch(
            f"the direction was harvested with {rec.model_id} (fingerprint {fingerprint}, revision {rec.revision}), "
            f"but {source} is {lm.model_id} (fingerprint {lm.fingerprint}, revision {lm.revision}); "
            f"directions only transfer within the same model")
    return lm
