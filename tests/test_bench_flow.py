"""The flow-matching benchmark (tests/bench/bench_flow.py) still runs end to end, at its tiny layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent / "bench" / "bench_flow.py"


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_the_flow_benchmark_runs_at_the_tiny_layout(capsys, family):
    spec = importlib.util.spec_from_file_location("bench_flow", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--family", family, "--tiny", "--device", "cpu", "--iters", "1", "2", "--rank", "2",
                      "--null-rank", "1", "--chunk", "2", "--reps", "1"])
    assert [r["done"] for r in out["runs"]] == [(1, 1), (2, 2)]  # tol=0: exactly the iterations asked for
    assert all(r["jvps"] == 7 * r["iters"] and r["vjps"] == 7 * r["iters"] for r in out["runs"])
    assert out["forward"] > 0 and out["per_iter"] > 0 and out["equivalents"] > 1 and out["peak_gib"] > 0
    printed = capsys.readouterr().out
    passes = "guided transformer x2" if family == "sd3" else "guidance embedded"
    assert "forward-pass equivalents" in printed and "peak memory" in printed and passes in printed
