"""The .pyi stub and the compiled module agree: every stubbed name exists, and
every public name of the module is stubbed, with the same keyword arguments."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import berth
from berth import _native

STUB = Path(berth.__file__).parent / "_native.pyi"


def stub_defs():
    tree = ast.parse(STUB.read_text())
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_every_stubbed_name_exists_and_every_export_is_stubbed():
    defs = stub_defs()
    runtime_only_helpers = {"UnpackResult", "PackResult", "UnpackOptions"}  # TypedDicts: typing only
    for name in defs:
        if name not in runtime_only_helpers:
            assert hasattr(_native, name), f"{name} is in the stub but not in the module"
    public = {n for n in dir(_native) if not n.startswith("_")}
    assert public <= set(defs), f"not in the stub: {public - set(defs)}"


def test_function_parameters_match():
    for name, node in stub_defs().items():
        if not isinstance(node, ast.FunctionDef):
            continue
        stub_params = [a.arg for a in node.args.args + node.args.kwonlyargs]
        sig = inspect.signature(getattr(_native, name))
        assert list(sig.parameters) == stub_params, name
        kwonly = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
        assert kwonly == [a.arg for a in node.args.kwonlyargs], name


def test_class_members_match():
    for name, node in stub_defs().items():
        if isinstance(node, ast.ClassDef) and hasattr(_native, name):
            cls = getattr(_native, name)
            for item in node.body:
                member = item.name if isinstance(item, ast.FunctionDef) else getattr(getattr(item, "target", None), "id", None)
                if member and member != "__init__":
                    assert hasattr(cls, member), f"{name}.{member}"
