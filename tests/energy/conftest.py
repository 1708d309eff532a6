"""Fixtures installing the fakes of energy_fakes.py at the library seams."""

from __future__ import annotations

import sys

import pytest
from energy_fakes import FakeDevice, FakeGpu, FakeNvml, FakePowercap

from nas.energy.nvml import NvmlMeter
from nas.energy.rapl import RaplMeter


@pytest.fixture
def fake_nvml(monkeypatch, tmp_path):
    """Install a fake pynvml (call with the GPUs it should show) and a private lock folder."""
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    NvmlMeter.clear_probe_cache()

    def install(gpus: list[FakeGpu] | None = None, init_error: str | None = None) -> FakeNvml:
        fake = FakeNvml(gpus if gpus is not None else [FakeGpu()], init_error)
        monkeypatch.setitem(sys.modules, "pynvml", fake.module)
        # the probe watches the counters move in the fake GPUs' time
        devices = [g.device for g in fake.gpus] or [FakeDevice()]
        monkeypatch.setattr(NvmlMeter, "probe_clock", staticmethod(devices[0].clock))
        monkeypatch.setattr(NvmlMeter, "probe_sleep", staticmethod(lambda s: [d.sleep(s) for d in devices]))
        NvmlMeter.clear_probe_cache()
        return fake

    yield install
    NvmlMeter.clear_probe_cache()


@pytest.fixture
def powercap(tmp_path, monkeypatch):
    """Build a fake powercap tree and point NAS_POWERCAP_ROOT at it."""
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path / "locks"))
    RaplMeter.clear_probe_cache()

    def build(live: bool = True, **kw) -> FakePowercap:
        """`live`: the counters move while a probe watches them (1 mJ per probe poll)."""
        tree = FakePowercap(tmp_path / "powercap", **kw)
        monkeypatch.setenv("NAS_POWERCAP_ROOT", str(tree.root))
        if live:
            monkeypatch.setattr(RaplMeter, "probe_sleep", staticmethod(lambda s: tree.bump(1000)))
        RaplMeter.clear_probe_cache()
        return tree

    yield build
    RaplMeter.clear_probe_cache()
