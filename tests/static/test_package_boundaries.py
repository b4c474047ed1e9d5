"""Which package may import which: the layer is domain code only, the emulator knows nothing of
refit, and the command line and demo sit on top of both (README, "Layout")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.static.static_helpers import REPO

LAYER = REPO / "layers" / "refit" / "refit"
EMULATOR = REPO / "local_cloud"


def imported_packages(directory: Path) -> dict[str, set[str]]:
    """Top-level package of every import in every module under ``directory``, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted(directory.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def test_the_layer_holds_domain_code_only() -> None:
    offenders = {
        path: sorted(names & {"local_cloud", "refit_cli"})
        for path, names in imported_packages(LAYER).items()
        if names & {"local_cloud", "refit_cli"}
    }
    assert offenders == {}
    assert (REPO / "refit_cli" / "cli.py").is_file() and not (LAYER / "cli.py").exists()


def test_the_emulator_imports_nothing_from_refit() -> None:
    offenders = {
        path: sorted(names & {"refit", "refit_cli"})
        for path, names in imported_packages(EMULATOR).items()
        if names & {"refit", "refit_cli"}
    }
    assert offenders == {}


def test_the_layer_is_grouped_by_workflow_stage() -> None:
    # One subpackage per stage of the workflow (and the shared registry, ledger and data), and
    # at most 8 modules beside them: what every stage uses (README, "Layout")
    modules = sorted(p.stem for p in LAYER.glob("*.py") if p.stem != "__init__")
    packages = sorted(p.name for p in LAYER.iterdir() if (p / "__init__.py").is_file())
    assert len(modules) <= 8, modules
    assert {"start_retrain", "prepare_run", "evaluate_models", "record_run"} <= set(packages)
    functions = {p.name for p in (REPO / "functions").iterdir() if (p / "app.py").is_file()}
    # each workflow function's domain code is the subpackage of the same name, where it has one
    assert functions & set(packages) == functions - {"check_data_file"}


def test_the_readme_map_lists_every_module_of_the_layer() -> None:
    # Given the README's table of the domain package ("| `<folder>/` | what | `module`, ... |")
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("| `refit/…` | what | modules |") :]
    rows = section[: section.index("\n\n")].splitlines()[2:]
    listed = {}
    for row in rows:
        folder, _, modules = (cell.strip() for cell in row.strip("|").split("|"))
        name = "" if folder == "top level" else folder.strip("`/")
        listed[name] = sorted(re.findall(r"`(\w+)`", modules))
    # Then each subpackage (and the top level) lists exactly its modules
    actual = {
        "" if directory == LAYER else directory.name: sorted(
            p.stem for p in directory.glob("*.py") if p.stem != "__init__"
        )
        for directory in [LAYER, *(p for p in LAYER.iterdir() if (p / "__init__.py").is_file())]
    }
    assert listed == actual
