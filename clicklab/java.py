"""Finding Java: the JDK's commands and the check, before anything starts a JVM.

A missing or old Java is one clear sentence saying what to install, instead of a Java stack trace at
the first Flink statement. :mod:`clicklab.flink` (PyFlink's JVM), :mod:`clicklab.cluster` (the standalone
cluster's scripts) and :mod:`clicklab.javaudf` (``javac``) use it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from clicklab import settings
from clicklab.exceptions import JavaError

_INSTALL_HINT = (
    f"PyFlink needs Java {settings.MIN_JAVA} or newer. Install OpenJDK 17 "
    "(a JDK: the Java functions are compiled with javac; Debian/Ubuntu: `sudo apt-get install "
    "openjdk-17-jdk-headless`; macOS: `brew install openjdk@17`), "
    "or create the conda environment from environment.yml, which provides it; "
    "then make sure `java -version` works or JAVA_HOME points at it."
)


def jdk_tool(name: str) -> str | None:
    """A JDK command (``java``, ``javac``, ``jar``): ``$JAVA_HOME/bin/<name>`` if JAVA_HOME is set, else on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", name)
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which(name)


def java_command() -> str | None:
    """The java executable PyFlink will use (see :func:`jdk_tool`)."""
    return jdk_tool("java")


def parse_java_version(text: str) -> int:
    """Major version from ``java -version`` output: ``"17.0.15"`` -> 17, ``"1.8.0_402"`` -> 8.

    >>> parse_java_version('openjdk version "1.8.0_402"')
    8
    >>> parse_java_version('openjdk version "21" 2023-09-19')
    21
    """
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        raise ValueError(f"cannot read a Java version from: {text.strip()[:200]!r}")
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_java() -> int:
    """Return the Java major version, or raise :class:`JavaError` saying what to install."""
    java = java_command()
    if java is None:
        where = f"JAVA_HOME={os.environ['JAVA_HOME']} has no bin/java" if os.environ.get("JAVA_HOME") else (
            "no `java` on PATH"
        )
        raise JavaError(f"Java not found ({where}). {_INSTALL_HINT}")
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
        version = parse_java_version(proc.stderr + proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise JavaError(f"`{java} -version` failed ({exc}). {_INSTALL_HINT}") from exc
    if version < settings.MIN_JAVA:
        raise JavaError(f"Java {version} found at {java}, too old. {_INSTALL_HINT}")
    return version
