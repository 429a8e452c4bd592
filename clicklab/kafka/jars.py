"""Kafka's broker jars and Flink's Kafka SQL connector, resolved from Maven Central by ``clicklab/kafka/pom.xml``.

Nothing is committed or downloaded by hand: ``mvn`` copies the jars to ``build/kafka/jars/{broker,flink}/`` once,
and again when the pom changes (its hash is kept beside them). ``clicklab kafka jars`` runs it on its own;
``clicklab kafka up`` runs it when needed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clicklab.exceptions import ClicklabError

POM = Path(__file__).resolve().parent / "pom.xml"

MAVEN_HINT = (
    "Maven (`mvn`) fetches Kafka's and the Flink connector's jars from Maven Central: install it (Debian/Ubuntu: "
    "`sudo apt-get install maven`; macOS: `brew install maven`) or create the conda environment from "
    "environment.yml, which provides it."
)


class MavenError(ClicklabError):
    """Maven is missing, or could not resolve the jars."""


@dataclass(frozen=True)
class Jars:
    """Where the resolved jars are."""

    root: Path

    @property
    def broker(self) -> Path:
        """The broker's class path folder (Kafka and its runtime dependencies)."""
        return self.root / "broker"

    @property
    def flink(self) -> Path:
        """Flink's Kafka SQL connector (one shaded jar)."""
        return self.root / "flink"

    @property
    def stamp(self) -> Path:
        return self.root / ".pom-sha256"

    def connector(self) -> Path:
        """The connector jar (after :func:`resolve`)."""
        found = sorted(self.flink.glob("flink-sql-connector-kafka-*.jar"))
        if not found:
            raise MavenError(f"no flink-sql-connector-kafka jar in {self.flink}: run `clicklab kafka jars`")
        return found[-1]

    def classpath(self) -> str:
        """The broker's ``-cp`` (a wildcard over its folder)."""
        return str(self.broker / "*")


def jars(build: Path) -> Jars:
    """Where ``build``'s jars are, as an absolute path: Maven resolves a relative ``-Dclicklab.jars`` against the
    pom's folder (a notebook's ``build = "../build"`` put them under ``clicklab/build/``)."""
    return Jars(Path(build).resolve() / "kafka" / "jars")


def _pom_hash() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def resolved(build: Path) -> bool:
    """The jars are there and came from the pom as it is now."""
    j = jars(build)
    return (j.stamp.is_file() and j.stamp.read_text().strip() == _pom_hash()
            and any(j.broker.glob("kafka_2.13-*.jar")) and any(j.flink.glob("*.jar")))


def resolve(build: Path, quiet: bool = True, timeout_s: float = 900.0) -> Jars:
    """Copy the jars into ``build/kafka/jars/`` with Maven, unless they are there already; raise
    :class:`MavenError` naming what to install, or Maven's own error."""
    j = jars(build)
    if resolved(build):
        return j
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenError(f"`mvn` not found on PATH. {MAVEN_HINT}")
    for folder in (j.broker, j.flink):  # a pom change may drop a jar: start from empty folders
        shutil.rmtree(folder, ignore_errors=True)
    cmd = [mvn, "-B", *(["-q"] if quiet else []), "-f", str(POM), f"-Dclicklab.jars={j.root}", "package"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise MavenError(f"`{' '.join(cmd)}` took over {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise MavenError(f"Maven could not resolve the jars of {POM} (exit {proc.returncode}):\n{tail}")
    if not (any(j.broker.glob("kafka_2.13-*.jar")) and any(j.flink.glob("*.jar"))):
        raise MavenError(f"Maven ran but left no jars in {j.broker} and {j.flink} ({POM})")
    j.stamp.write_text(_pom_hash() + "\n")
    return j
