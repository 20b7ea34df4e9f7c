"""Every benchmark script in bench/ still imports: the library's modules move, the scripts
must follow (they are run by hand, hours apart, so nothing else would notice). Modules named
``_*.py`` are the scripts' shared pieces, imported by them."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("[!_]*.py")))
def test_a_benchmark_script_imports(script):
    spec = importlib.util.spec_from_file_location(f"bench_{script[:-3]}", BENCH / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the scripts run nothing at import (a __main__ guard)
    assert callable(getattr(module, "main", None)), f"bench/{script} has no main()"
