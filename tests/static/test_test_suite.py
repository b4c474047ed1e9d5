"""The suite's own shape: every test checks something, and every test folder is a package (so two
test files may share a name: tests.unit.test_x and tests.emulator.test_x)."""

from __future__ import annotations

import ast

from tests.static.static_helpers import REPO

TESTS = REPO / "tests"
# A call that checks: pytest.raises/fail/warns, or a helper named for checking (which asserts).
CHECKING_CALLS = ("raises", "fail", "warns")
CHECKING_PREFIXES = ("assert", "expect", "check", "wait_for", "verify")


def _checks(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            called = node.func
            name = (
                called.attr
                if isinstance(called, ast.Attribute)
                else called.id
                if isinstance(called, ast.Name)
                else ""
            )
            if name in CHECKING_CALLS or name.startswith(CHECKING_PREFIXES):
                return True
    return False


def test_every_test_checks_something() -> None:
    # Given every test function of the suite
    unchecked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            is_test = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            # Then each asserts, expects an exception, or calls a checking helper
            if is_test and node.name.startswith("test_") and not _checks(node):
                unchecked.append(f"{path.relative_to(REPO)}::{node.name}")
    assert unchecked == []


def test_every_test_folder_is_a_package() -> None:
    folders = [
        path
        for path in [TESTS, *TESTS.rglob("*")]
        if path.is_dir() and any(path.glob("*.py")) and "__pycache__" not in path.parts
    ]
    assert folders, "no test folders found"
    assert [str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file()] == []


def test_the_checker_sees_a_test_that_checks_nothing() -> None:
    # Given a test that only calls the code under test
    source = "def test_x():\n    run()\n\ndef test_y():\n    assert run()\n"
    tests = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    # Then the first is flagged, the second is not
    assert [_checks(t) for t in tests] == [False, True]
