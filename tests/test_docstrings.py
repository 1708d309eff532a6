"""Every public function and class in `nas/` has a docstring (units, shapes, errors: STYLE.md).

Public means: a module-level function or class whose name does not start with `_`, and a method
not starting with `_` of such a class, in any module of the package (a private module's public
names are the API its package re-exports, as in Optuna).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nas"
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def undocumented(source: str, filename: str) -> list[str]:
    """`file:line name` of every public definition in `source` without a docstring."""
    missing = []

    def visit(node: Definition, qualname: str) -> None:
        if ast.get_docstring(node) is None:
            missing.append(f"{filename}:{node.lineno} {qualname}")

    for node in ast.parse(source, filename).body:
        if not isinstance(node, Definition) or node.name.startswith("_"):
            continue
        visit(node, node.name)
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, Definition) and not member.name.startswith("_"):
                    visit(member, f"{node.name}.{member.name}")
    return missing


def test_every_public_function_class_and_method_has_a_docstring():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 30  # the walk really reads the package
    missing = [
        m
        for path in modules
        for m in undocumented(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    ]
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f():\n    pass\n", ["m.py:1 f"]),
        ("def f():\n    '''Doc.'''\n", []),
        ("def _f():\n    pass\n", []),
        ("class C:\n    def m(self):\n        pass\n", ["m.py:1 C", "m.py:2 C.m"]),
        ("class C:\n    '''Doc.'''\n    def _m(self):\n        pass\n    def __call__(self):\n        pass\n", []),
        ("class _C:\n    def m(self):\n        pass\n", []),
        ("async def f():\n    pass\n", ["m.py:1 f"]),
        ("def f():\n    def inner():\n        pass\n    '''Not first: no docstring.'''\n", ["m.py:1 f"]),
    ],
)
def test_the_walk_finds_what_it_should(source, expected):
    assert undocumented(source, "m.py") == expected
