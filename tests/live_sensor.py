"""A fake RAPL package measured in real time: a powercap sysfs tree whose `energy_uj` advances as
idle power x wall time plus active power x the CPU time the watched processes spent, as a CPU
package counter behaves. Point NAS_POWERCAP_ROOT at `root` and the `rapl` meter reads it through
its real code.

Two ways to advance it. Measured in this process (`updated_on_read`), the counter is brought up to
date by every read of the meter (at its one file-reading seam), so each reading is exact at the
moment it is taken however loaded the machine is. Measured by other processes (`with tree:`), a
thread of the test process rewrites it every `period_s`; on a loaded machine that thread may
stall, and a stalled counter is what the meter's stuck-sensor guard is there to refuse."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (0 when it is gone); this process's to the
    nanosecond (time.process_time), others' in /proc ticks (10 ms)."""
    if pid == os.getpid():
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of proc(5))


class LivePowercap:
    """One package zone (`intel-rapl:0`, `package-0`), updated on every read of this process's meter
    (`updated_on_read`) or every `period_s` seconds by a thread (`with tree:`)."""

    def __init__(
        self,
        root: Path,
        pids: Callable[[], list[int]],
        idle_w: float = 5.0,
        active_w: float = 20.0,
        period_s: float = 0.002,
    ) -> None:
        self.root, self.pids, self.idle_w, self.active_w, self.period_s = root, pids, idle_w, active_w, period_s
        zone = root / "intel-rapl:0"
        zone.mkdir(parents=True)
        (zone / "name").write_text("package-0\n")
        (zone / "max_energy_range_uj").write_text("262143328850\n")
        self.file = zone / "energy_uj"
        self.energy_uj = 0.0
        self._write()
        self._lock = threading.Lock()
        self._last_t = time.monotonic()
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _write(self) -> None:
        tmp = self.file.with_name(".energy_uj.tmp")
        tmp.write_text(f"{int(self.energy_uj) % 262143328850}\n")
        os.replace(tmp, self.file)  # atomic, as a sysfs read is

    def update(self) -> None:
        """Advance the counter to now: idle power since the last update plus active power x the CPU
        seconds the watched processes spent since then."""
        with self._lock:
            now = time.monotonic()
            busy = 0.0
            for pid in self.pids():
                cpu = cpu_seconds(pid)
                busy += max(0.0, cpu - self._seen.get(pid, cpu))
                self._seen[pid] = cpu
            self.energy_uj += (self.idle_w * (now - self._last_t) + self.active_w * busy) * 1e6
            self._last_t = now
            self._write()

    def updated_on_read(self, monkeypatch: Any) -> LivePowercap:
        """Bring the counter up to date whenever the `rapl` meter of this process reads it (through
        `nas.energy.rapl._read_text`, where it reads every file); no thread runs."""
        from nas.energy import rapl

        read = rapl._read_text
        self.update()  # the watched processes' CPU time counts from here

        def read_text(path: Path) -> str:
            if Path(path) == self.file:
                self.update()
            return read(path)

        monkeypatch.setattr(rapl, "_read_text", read_text)
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.update()

    def __enter__(self) -> LivePowercap:
        self.update()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def rapl_profile(
    path: Path,
    runtime: Any = None,
    precisions: tuple[str, ...] = ("fp32", "int8"),
    window_s: float = 0.02,
    **inference: Any,
) -> Path:
    """The shipped cpu-rapl profile with a short protocol (windows of `window_s`, default 20 ms, 2
    repeats), gross energy as objective, and `runtime`; written to `path`."""
    from nas.config import load_profile

    doc = yaml.safe_load(Path(load_profile("cpu-rapl").source).read_text())
    doc["name"] = path.stem
    doc["device"]["precisions"] = list(precisions)
    doc["estimate"]["energy_per_mac_j"] = {
        p: v for p, v in doc["estimate"]["energy_per_mac_j"].items() if p in precisions
    }
    doc["throughput"]["peak_macs_per_s"] = {
        p: v for p, v in doc["throughput"]["peak_macs_per_s"].items() if p in precisions
    }
    doc["inference"].update({"batch_size": 16, **inference})
    doc["measurement"] = {
        "warmup_batches": 1,
        "min_window_s": window_s,
        "min_inferences": 16,
        "repeats": 2,
        "idle_window_s": window_s,
        "subtract_idle": False,
    }
    if runtime is not None:
        doc["runtime"] = runtime
    path.write_text(yaml.safe_dump(doc))
    return path
