"""Benchmark: `apply --query TEXT FACE --mask M` editing from its ranking's inversion against the
path before, which inverted the image again for the edit (the same 50-step grid, the same state);
with ``--candidates N``, the N full edits of the ranking's top N.

A catalog of mouth directions is harvested from a few toy faces, embedded and indexed; each
held-out face is then edited through the CLI both ways, alternating (before, shared, shared,
before), in one process, so that load drifts alike on both. Prints each way's seconds per face and
their ratio.

    .venv/bin/python tests/bench/bench_apply_query.py [--faces 4] [--query smile] [--sources 3] [--candidates 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

import locobank.apply.run as run_module  # noqa: E402
from locobank.catalog import Catalog  # noqa: E402
from locobank.clip import load_clip  # noqa: E402
from locobank.embed import embed_directions  # noqa: E402
from locobank.harvest import HarvestParams, discover, plan, work  # noqa: E402
from locobank.index import build_index, catalog_folder  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.paths import TOY_DDPM  # noqa: E402
from locobank.search import name_directions  # noqa: E402
from locobank.toyworld import HELD_OUT_SEED, write_dataset  # noqa: E402
from locobank_cli.main import cli  # noqa: E402


def catalog(root: Path, sources: int) -> str:
    """A catalog of the mouth directions of ``sources`` toy faces, embedded, named and indexed."""
    write_dataset(root / "faces", sources, 1_000_000)
    db = root / "catalog.db"
    model = load_model(TOY_DDPM, device="cpu")
    clip = load_clip("toy", device="cpu")
    with Catalog.open(f"sqlite:///{db}", upgrade=True) as cat:
        params = HarvestParams.from_defaults(model.settings)
        work(cat, model, plan(cat, model, discover(root / "faces", labels={"mouth"}), params).id, params)
        embed_directions(cat, clip, device="cpu")
        name_directions(cat, clip)
        build_index(cat, clip.clip_id, folder=catalog_folder(root, cat.catalog_id))
    return f"sqlite:///{db}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=4, help="held-out faces to edit")
    ap.add_argument("--query", default="smile")
    ap.add_argument("--sources", type=int, default=3, help="faces whose mouth directions make the catalog")
    ap.add_argument("--candidates", type=int, default=1, help="full edits of the ranking's top N, the best kept")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    db = catalog(root, args.sources)
    write_dataset(root / "unseen", args.faces, HELD_OUT_SEED + 30_000)
    faces = sorted(p for p in (root / "unseen").glob("face_*.png") if "_" not in p.stem[5:])
    shared = run_module._ranked_inversion
    times: dict[str, list[float]] = {"before": [], "shared": []}
    for face in faces:
        for way in ("before", "shared", "shared", "before"):
            run_module._ranked_inversion = shared if way == "shared" else (lambda req, cands: None)
            t0 = time.perf_counter()
            res = CliRunner().invoke(cli, ["apply", "--query", args.query, str(face), "--mask",
                                           str(face.with_name(f"{face.stem}_mouth.png")), "--out",
                                           str(root / f"{way}.png"), "--candidates", str(args.candidates),
                                           "--device", "cpu", "--db", db])
            times[way].append(time.perf_counter() - t0)
            if res.exit_code != 0:
                raise SystemExit(res.output)
    run_module._ranked_inversion = shared
    for way, ts in times.items():
        print(f"{way:>7}: {statistics.mean(ts):.2f} s per face (median {statistics.median(ts):.2f}), "
              f"{len(ts)} runs on {len(faces)} faces, --candidates {args.candidates}")
    print(f"ratio (before / shared), by the mean: {statistics.mean(times['before']) / statistics.mean(times['shared']):.3f}")


if __name__ == "__main__":
    main()
