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


def test_no_public_name_is_also_a_module_name():
    """Importing a submodule sets it as an attribute of `nas`, replacing a public name it shares."""
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(nas.__path__)}
    assert not modules & set(nas.__all__), modules & set(nas.__all__)


def test_select_and_rerank_stay_functions_after_a_report(tmp_path):
    code = (
        "import nas, importlib\n"
        "try:\n    nas.build_report('missing-run')\nexcept nas.NasError:\n    pass\n"
        "for mod in ('nas.selection', 'nas.reranking', 'nas.report', 'nas.export'):\n"
        "    importlib.import_module(mod)\n"
        "try:\n    nas.select('knee', [])\nexcept nas.RunError as e:\n    print('RunError', e)\n"
        "print(callable(nas.select), callable(nas.rerank))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the function ran (and found no front), instead of "'module' object is not callable"
    assert proc.stdout.splitlines() == [
        "RunError the run has no feasible complete trial, so no front and no knee",
        "True True",
    ]
