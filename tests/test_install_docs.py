"""The README's CPU-only install path: PyTorch's CPU build first, then ``pip install -e .``, which
must keep it (a torch range that a ``+cpu`` build does not satisfy would pull the CUDA build)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_only_install_is_documented_and_kept_by_pyproject():
    tomllib = pytest.importorskip("tomllib")
    readme = (ROOT / "README.md").read_text()
    # the two commands CI runs stay as they are
    assert "pip install -e . && refcolor demo\n" in readme and 'pip install -e ".[test]" && pytest\n' in readme
    cpu = [line for line in readme.splitlines() if "--index-url https://download.pytorch.org/whl/cpu" in line]
    assert cpu, "the README has no CPU-only install command"
    pins = dict(re.findall(r"\b(torch|torchvision)==([\w.]+)", cpu[0]))
    assert set(pins) == {"torch", "torchvision"}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = {r.name: r.specifier for r in map(Requirement, deps) if r.name in pins}
    for name, version in pins.items():  # the CPU index serves e.g. 2.14.1+cpu
        assert ranges[name].contains(f"{version}+cpu"), f"pyproject's {name}{ranges[name]} would replace the CPU build"
