"""Every benchmark script still imports: a refactor that moves a name must move it in
bench/ too (their numbers are in the README)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PATIENCE_S

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_imports(script: str) -> None:
    probe = (
        "import importlib.util, sys\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        f"spec = importlib.util.spec_from_file_location('bench_probe', {str(BENCH / script)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=PATIENCE_S
    )
    assert out.returncode == 0, out.stderr[-2000:]
