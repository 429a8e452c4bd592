"""Shared fixtures. One Flink table environment (one JVM) serves every test of a run.

Tests that read ``../shared`` (the real Zeppelin notes and NAB series that CI has beside the clone) take
their files from :func:`shared_path` or :func:`shared_files`: where ``../shared`` is absent (a bare clone)
they are skipped with one line naming what is missing, never collected as zero cases.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from clicklab import settings

#: The shared data beside the checkout (``../shared``); absent in a bare clone.
SHARED = settings.REPO.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _missing(path: Path) -> str:
    return f"needs {path} (../shared is not beside this clone)"


def shared_path(*parts: str) -> Path:
    """A path under ``../shared``; skips the calling test, naming it, when it does not exist."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(_missing(path))
    return path


def shared_files(folder: str, pattern: str = "*", suffixes: tuple[str, ...] = ()) -> list:
    """Files under ``../shared/<folder>`` as ``pytest.param``s for ``parametrize``.

    Where none exist, one skipped case that says so: a parametrized test never collects zero cases.
    """
    base = SHARED / folder
    files = sorted(p for p in base.glob(pattern) if p.is_file() and (not suffixes or p.suffix in suffixes))
    if not files:
        return [pytest.param(None, id="absent", marks=pytest.mark.skip(reason=_missing(base)))]
    return [pytest.param(p, id=p.name) for p in files]


def write_events(path: Path, events: Iterable[tuple[str, str, str]]) -> Path:
    """Write (browseraction, site, event_time) tuples as a replay file (gzip if the name says so)."""
    lines = "".join(
        json.dumps({"browseraction": a, "site": s, "event_time": t}) + "\n" for a, s, t in events
    )
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(lines)
    else:
        path.write_text(lines, encoding="utf-8")
    return path


def email_texts(outbox: Path) -> list[str]:
    """The plain-text bodies of the e-mails in ``outbox`` (``build/outbox/*.eml``), decoded, in file order."""
    import email
    import email.policy

    texts = []
    for path in sorted(Path(outbox).glob("*.eml")):
        with open(path, "rb") as fh:
            message = email.message_from_binary_file(fh, policy=email.policy.default)
        texts.append(message.get_body(preferencelist=("plain",)).get_content())
    return texts


#: The e-mail of the Studio lab's burst, live: the lab's sentence with the CTR of a window the burst filled whole
#: (its session starts on a window boundary: 500 %, or a little less with the site's own traffic in the window),
#: then what was usual for the site (issue 23).
BURST_EMAIL = (r"Anomaly detected with a click through rate of (\d+(?:\.\d+)?)% and an anomaly score of [\d.]+\n\n"
               r"CTR \1 % where about [\d.]+ % \([\d.]+-[\d.]+ %\) is usual: above the site's usual range\.")


def burst_emails(outbox: Path, at_least: float = 400.0) -> list[str]:
    """The e-mails in ``outbox`` that read as the burst's (:data:`BURST_EMAIL`) with a CTR of at least ``at_least``."""
    import re

    return [text for text in email_texts(outbox)
            if (m := re.search(BURST_EMAIL, text)) and float(m.group(1)) >= at_least]


def client_env() -> dict[str, str]:
    """The environment for a clicklab subprocess: without what an in-process PyFlink UDF worker sets."""
    return {k: v for k, v in os.environ.items() if k != "PYFLINK_GATEWAY_DISABLED"}


@pytest.fixture(scope="session")
def t_env():
    """The run's one streaming table environment."""
    from clicklab.flink import create_table_env

    return create_table_env()


@pytest.fixture(autouse=True)
def _only_flink_tests_start_a_jvm(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts Flink or jpype in this process must be marked ``flink`` (``make test-fast`` skips those)."""
    if request.node.get_closest_marker("flink") is not None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{request.node.nodeid} starts a JVM: mark it @pytest.mark.flink")

    monkeypatch.setattr("clicklab.flink.create_table_env", refuse)
    try:
        import jpype
    except ImportError:  # pragma: no cover - jpype is a dev dependency
        return
    monkeypatch.setattr(jpype, "startJVM", refuse)


@pytest.fixture(scope="module")
def kafka_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A build folder with the lab's Kafka broker running (stopped after the module). Its jars are resolved once,
    into the checkout's ``build/``; skipped with one line where Maven is missing and they are not there."""
    import shutil

    from clicklab import settings
    from clicklab.kafka import broker, jars

    if shutil.which("mvn") is None and not jars.resolved(settings.DEFAULT_BUILD):
        pytest.skip(f"no `mvn`: {jars.MAVEN_HINT}")
    shared = jars.resolve(settings.DEFAULT_BUILD)
    folder = tmp_path_factory.mktemp("kafka-build")
    (folder / "kafka").mkdir()
    (folder / "kafka" / "jars").symlink_to(shared.root)
    broker.up(folder)
    yield folder
    broker.down(folder)
