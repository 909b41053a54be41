"""The wheel holds exactly the package: the listed subpackages, no tests, caches or venv."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
           str(ROOT)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "No module named" in result.stderr and "setuptools" in result.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("lazyfuse-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_contains_only_listed_packages(wheel_names: list[str]) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(config["tool"]["setuptools"]["packages"])
    code = [n for n in wheel_names if not n.startswith("lazyfuse-0")]  # skip the .dist-info folder
    assert code, "the wheel is empty"
    for name in code:
        assert name.startswith("lazyfuse/"), name
        package = ".".join(Path(name).parent.parts)
        assert package in packages, f"{name} is outside the listed packages"
    for forbidden in ("tests/", ".venv/", "__pycache__", ".cache/"):
        assert not any(forbidden in n for n in code), forbidden


def test_every_listed_package_is_in_the_wheel(wheel_names: list[str]) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in config["tool"]["setuptools"]["packages"]:
        init = package.replace(".", "/") + "/__init__.py"
        assert init in wheel_names, f"{package} missing from the wheel"


def test_every_source_package_is_listed() -> None:
    """A new folder with an __init__.py must be added to pyproject, or it silently drops out."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    skip = {".venv", "tests", "build", ".git", ".cache"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and rel.parts[0] in skip:
            continue
        package = ".".join(("lazyfuse", *rel.parts))
        assert package in listed, f"{package} is not listed in pyproject.toml"
