"""The one-command GPU benchmark (tests/bench/bench_gpu.py) runs end to end on the CPU at tiny layouts."""

from __future__ import annotations

import pytest

from tiny import load_bench


@pytest.mark.slow
def test_the_gpu_benchmark_runs_at_reduced_sizes_on_the_cpu(capsys):
    out = load_bench("bench_gpu").main(["--tiny", "--device", "cpu", "--jobs", "2", "--rank", "2", "--null-rank", "2",
                                        "--iters", "6", "--steps", "3", "--dtypes", "fp32,bf16", "--krylov-block", "1",
                                        "--jvp-mode", "forward"])
    for key in ("pixel", "sd"):
        r = out[key]
        assert r["unit"] > 0 and r["one_cold"] > 0 and r["plain"] > 0 and r["masked"] > 0 and r["peak"] > 0
        assert len(r["rows"]) == 2 and all(row["cold_s"] > 0 and row["warm_s"] > 0 for row in r["rows"])
    assert out["pixel_bf16"] is not None and out["sd_bf16"] is not None
    printed = capsys.readouterr().out
    assert "CPU (no GPU)" in printed and "FPE" in printed and "transfer per image" in printed and "bf16" in printed
    assert "Krylov block 1 (edit and null bases grow 1 and 1 vectors" in printed and "J v forward mode" in printed
    from locobank.loco import jacobian, linearization
    assert jacobian.KRYLOV_BLOCK == 4 and linearization.JVP_MODE == "auto"  # its settings do not outlive it
