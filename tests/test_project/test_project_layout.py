"""The project's standing contracts: packages import from this repo, layers import one way."""

import ast
import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("augment", "loaders", "pipelines", "datafactory")
ALLOWED = {
    "augment": set(),
    "loaders": set(),
    "pipelines": {"augment", "loaders"},
    "datafactory": {"augment", "loaders", "pipelines"},
}


@pytest.mark.parametrize("name", PACKAGES)
def test_package_imports_from_this_repository(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(REPO / name), module.__file__


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__"):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_layers_import_one_way(package):
    violations = []
    for path in sorted((REPO / package).rglob("*.py")):
        ours = _imported_top_levels(path) & set(PACKAGES) - {package}
        bad = ours - ALLOWED[package]
        if bad:
            violations.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


def test_layer_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom pipelines.x import y\nimport datafactory.cli as c\n")
    assert _imported_top_levels(bad) >= {"pipelines", "datafactory"}


def test_importing_loaders_and_augment_stays_light():
    """Heavy optional libraries are imported by the functions that need them, not at import."""
    code = (
        "import sys, loaders, augment\n"
        "heavy = [m for m in ('av', 'h5py', 'pydicom', 'ray', 'datasets', 'soundfile') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_no_unsafe_deserialisation_in_the_packages():
    needles = ("pickle.load", "allow_pickle=True", "weights_only=False")
    hits = [
        f"{path.relative_to(REPO)}: {needle}"
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        for needle in needles
        if needle in path.read_text()
    ]
    assert not hits, hits


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [block.split("\n```", 1)[0].strip() for block in blocks]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    demo, tests = _readme_commands()
    assert "pip install ." in demo and "datafactory demo" in demo
    assert 'pip install -e ".[dev]"' in tests and "pytest" in tests
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines, "the README's test command and .ci/run have drifted apart"
