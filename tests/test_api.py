"""The public API: every exported name resolves, and `import nas` does not load torch."""

from __future__ import annotations

import subprocess
import sys

import nas


def test_every_exported_name_resolves():
    for name in nas.__all__:
        assert getattr(nas, name) is not None, name


def test_import_is_light():
    code = "import sys, nas; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
