"""Export directions to a pack file and import packs (exchange between catalogs), as ``Catalog`` methods."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select

from locobank.catalog import packs
from locobank.catalog.base import CatalogBase
from locobank.catalog.jobs import condition_hash
from locobank.catalog.safetensors_io import encode_vector, sha256_hex
from locobank.catalog.schema import Direction, HarvestRun, Image, Job, Mask, Model, Vector
from locobank.errors import InputError

log = logging.getLogger(__name__)


class PackExchange(CatalogBase):
    """Pack methods of ``Catalog``."""

    def export_pack(self, ids: Iterable[int], path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write directions and their provenance to one safetensors file, atomically, readable by
        others (mode 0644 less the umask); an existing file is replaced only with ``overwrite``."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not wanted:
            raise InputError("export needs at least one direction id")
        if Path(path).exists() and not overwrite:
            raise InputError(f"{path} already exists; choose another --out, or pass --force to replace it")
        entries = []
        with self._tx() as s:
            for direction_id in wanted:
                d, m, raw = self._verified_raw(s, direction_id, None)
                job, run, image, mask = s.execute(
                    select(Job, HarvestRun, Image, Mask)
                    .join(HarvestRun, Job.run_id == HarvestRun.id)
                    .join(Image, Job.image_id == Image.id)
                    .join(Mask, Job.mask_id == Mask.id)
                    .where(Job.id == d.job_id)
                ).one()
                entries.append((packs.describe(d, m, run, image, mask, job.condition), raw))
        blob = packs.encode_pack(entries)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o644 & ~umask)  # mkstemp makes it 0600: a pack is meant to be shared
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out

    def import_pack(self, path: str | os.PathLike[str]) -> list[int]:
        """Add a pack's directions (all or none); directions already present are skipped. Returns new ids."""
        entries = packs.read_pack(Path(path))  # every check happens before anything is written
        encoded = [(e, raw, encode_vector(raw, e["model"]["fingerprint"])) for e, raw in entries]
        new_ids: list[int] = []
        with self._tx(write=True) as s:
            now = self._now(s)
            for e, raw, blob in encoded:
                model, job = self._import_job(s, e, now)
                sha = sha256_hex(blob)
                s.execute(
                    self._insert(Vector)
                    .values(sha256=sha, nbytes=len(blob), data=blob, created_at=now)
                    .on_conflict_do_nothing(index_elements=["sha256"])
                )
                got = s.execute(
                    self._insert(Direction)
                    .values(
                        job_id=job.id,
                        model_id=model.id,
                        rank_index=e["rank_index"],
                        singular_value=e["singular_value"],
                        t_edit=e["t_edit"],
                        t_edit_frac=e["t_edit_frac"],
                        null_rank=e["null_rank"],
                        vector_sha256=sha,
                        norm=e["norm"],
                        shape=list(raw.shape),
                        diagnostics=e["diagnostics"],
                        label=e["label"],
                        label_score=e["label_score"],
                        label_sign=e["label_sign"],
                        created_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["job_id", "rank_index"])
                    .returning(Direction.id)
                ).scalar_one_or_none()
                if got is not None:
                    new_ids.append(got)
                else:
                    log.info("pack direction %s is already in the catalog; skipped", e["id"])
        return new_ids

    def _import_job(self, s, e: dict, now):
        """The model, image, mask, run and done job a pack entry belongs to, made where missing.

        An image the catalog already holds (same sha256) keeps its local path; a new one is recorded
        as ``pack:NAME``, which names it without pointing at any file."""
        mm, im, ma, ru = e["model"], e["image"], e["mask"], e["run"]
        model = self._ensure(s, Model, dict(mm, created_at=now), ["fingerprint"])
        image = self._ensure(s, Image, dict(sha256=im["sha256"], uri=packs.IMPORTED_PREFIX + im["name"],
                                            width=im["width"], height=im["height"], channels=im["channels"]),
                             ["sha256"])
        mask = self._ensure(s, Mask, dict(ma, image_id=image.id, uri=None), ["image_id", "label", "sha256"])
        run = self._ensure_run(s, model.id, ru["params"], now, ru["locobank_version"])
        cond = e["condition"]
        job = self._ensure(s, Job, dict(run_id=run.id, image_id=image.id, mask_id=mask.id, condition=cond,
                                        condition_hash=condition_hash(cond), status="done", attempts=0,
                                        lease_owner="import", finished_at=now),
                           ["run_id", "image_id", "mask_id", "condition_hash"])
        if job.status != "done":  # a local harvest had it queued: the pack finishes it
            job.status, job.lease_owner, job.lease_expires_at, job.finished_at = "done", "import", None, now
        return model, job
