"""What board this is, for the edge meters (Jetson, Raspberry Pi): the sysfs root and the
device-tree model string. The root is injectable (NAS_SYSFS_ROOT) so tests run on a fake tree."""

from __future__ import annotations

import os
from pathlib import Path

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
