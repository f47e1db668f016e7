"""Running several harvest workers as local processes, e.g. one per GPU, on one shared catalog."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Callable

from .worker import HarvestParams, Summary


def devices_for(n: int, device: str | None) -> list[str | None]:
    """One device per worker: the given one for all, else round-robin over the visible GPUs."""
    if device:
        return [device] * n
    import torch

    k = torch.cuda.device_count()
    return [f"cuda:{i % k}" for i in range(n)] if k else [None] * n


def _worker_main(url: str, model_source: str, run_id: int, params: dict, device: str | None, batch: int,
                 lease_seconds: float, max_attempts: int, options: dict, queue) -> None:
    import torch

    from ..catalog import Catalog
    from ..models import load_model
    from .worker import default_owner, work

    torch.set_num_threads(1)
    cat = Catalog.open(url)
    try:
        model = load_model(model_source, device=device)
        s = work(cat, model, run_id, HarvestParams(**params), owner=default_owner(), batch=batch,
                 lease_seconds=lease_seconds, max_attempts=max_attempts, **options)
        queue.put(("ok", s.__dict__))
    except Exception as e:  # reported to the parent, which prints it
        queue.put(("error", f"{type(e).__name__}: {e}"))
    finally:
        cat.close()


def run_pool(url: str, model_source: str, run_id: int, params: HarvestParams, n: int, *, device: str | None = None,
             batch: int = 4, lease_seconds: float = 600.0, max_attempts: int = 3,
             poll: Callable[[], None] | None = None, options: dict | None = None) -> Summary:
    """Start ``n`` worker processes on the same run and wait for them; ``poll`` runs every second.
    ``options`` go to each worker's :func:`work` (``warm_start``, ``together``)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(url, model_source, run_id, params.to_dict(), dev, batch,
                                                    lease_seconds, max_attempts, dict(options or {}), queue),
                         daemon=False)
             for dev in devices_for(n, device)]
    for p in procs:
        p.start()
    total = Summary()
    results = 0
    while results < n:
        while not queue.empty():
            kind, payload = queue.get()
            results += 1
            if kind == "ok":
                for k in ("done", "failed", "directions"):
                    setattr(total, k, getattr(total, k) + payload[k])
                total.errors.extend(payload["errors"])
                total.find_seconds += payload["find_seconds"]
            else:
                total.crashes.append(f"worker crashed: {payload}")
        if poll is not None:
            poll()
        if results < n and not any(p.is_alive() for p in procs) and queue.empty():
            total.crashes.append("a worker exited without reporting")
            break
        time.sleep(0.5)
    for p in procs:
        p.join()
    return total
