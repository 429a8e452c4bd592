"""environment.yml (conda) and pyproject.toml must ask for the same things."""

import tomllib

import yaml

from clicklab import settings


def _pyproject():
    with open(settings.REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _env():
    with open(settings.REPO / "environment.yml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_pip_requirements_agree_with_pyproject():
    project = _pyproject()["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    deps = _env()["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    listed = {p for p in pip if not p.startswith("-e")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject.toml: {wanted - listed}"
    assert "-e ." in pip, "environment.yml must install the package itself"


def test_conda_gives_python_311_and_java_11_or_newer():
    conda = [d for d in _env()["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda
    java = next(d for d in conda if d.startswith("openjdk="))
    assert int(java.split("=")[1]) >= settings.MIN_JAVA
    assert ">=3.11" in _pyproject()["project"]["requires-python"]


def test_flink_is_pinned():
    assert "apache-flink==2.3.0" in _pyproject()["project"]["dependencies"]
