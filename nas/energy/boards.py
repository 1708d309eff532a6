"""What board this is, for the edge meters (Jetson, Raspberry Pi): the sysfs root and the
device-tree model string, and the meter base of boards sampled in a background thread. The root is
injectable (NAS_SYSFS_ROOT) so tests run on a fake tree."""

from __future__ import annotations

import os
from pathlib import Path

from nas.energy.guards import Clock, Sleep
from nas.energy.sensor_meter import SensorMeter
from nas.hardware import HardwareProfile

DEFAULT_ROOT = Path("/sys")


def sysfs_root(root: str | Path | None = None) -> Path:
    """The sysfs root: `root`, else $NAS_SYSFS_ROOT, else /sys."""
    if root is not None:
        return Path(root)
    env = os.environ.get("NAS_SYSFS_ROOT")
    return Path(env) if env else DEFAULT_ROOT


def model_file(root: Path) -> Path:
    """Where the device-tree model lives (/proc/device-tree is a link to this folder)."""
    return root / "firmware" / "devicetree" / "base" / "model"


def board_model(root: Path) -> str:
    """The board's device-tree model ("Raspberry Pi 5 Model B Rev 1.0", "NVIDIA Jetson Orin Nano
    Developer Kit"), or "unknown board" where the file is missing or unreadable."""
    try:
        text = model_file(root).read_text(encoding="ascii", errors="replace")
    except OSError:
        return "unknown board"
    return text.strip().strip("\x00") or "unknown board"


__all__ = ["board_model", "model_file", "sysfs_root"]


class BoardMeter(SensorMeter):
    """A sensor meter of an edge board whose power monitor is sampled in a background thread.

    `root` is the sysfs root the board is read under (a fake tree in tests; default `/sys` or
    `$NAS_SYSFS_ROOT`); `start_thread=False` leaves sampling to the caller (tests in fake time). The
    idle baseline is polled at the profile's `sensor.sample_interval_s` (s): each poll is one sensor
    read (on the Pi 5, one `vcgencmd` process).
    """

    def __init__(
        self,
        profile: HardwareProfile,
        *,
        root: str | Path | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        start_thread: bool = True,
    ) -> None:
        super().__init__(profile, clock=clock, sleep=sleep)
        self.root = sysfs_root(root)
        self.start_thread = start_thread
        self.idle_poll_s = profile.sensor.sample_interval_s
