"""benchmarks/bench_scoring.py refuses meaningless flag combinations and a bad --device when parsing (exit 2, one
line), instead of ignoring them (--rounds without --official-eval, --clip with --new-metrics) or ending in a
traceback (--device tpu)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scoring.py"


@pytest.mark.parametrize(("argv", "message"), [
    (["--rounds", "2"], "--rounds goes with --official-eval"),
    (["--new-metrics", "--clip"], "--new-metrics times cmmd, fd_dinov2 and dreamsim only"),
    (["--device", "tpu"], "--device 'tpu' is not a device name"),
])
def test_refused_when_parsed(argv, message):
    done = subprocess.run([sys.executable, str(BENCH), *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
