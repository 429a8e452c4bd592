"""What the lab notes about its topics under ``<build>/kafka/``, and removing it with the topics (``12_cleanup``).

* ``replay.json``: which replay file ``tickerstream`` holds (path, size, time, broker, lines), so that only the
  first notebook of a run produces it (:func:`clicklab.kafka.lab.open_topics`);
* ``written/<stream>``: the step that fills the stream ran to its end (a topic exists, empty or not, before).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from clicklab.kafka import broker


def written_marker(build: Path, name: str) -> Path:
    """The file that says stream ``name``'s step ran to its end."""
    return Path(build) / "kafka" / "written" / name


def replay_marker(build: Path) -> Path:
    """The file that says which replay ``tickerstream`` holds."""
    return Path(build) / "kafka" / "replay.json"


def remove_topics(build: Path) -> list[Path]:
    """Remove the lab broker's data (its topics) and these notes; what was removed. The jars stay. Raises
    :class:`clicklab.kafka.broker.KafkaError` while the broker runs (``clicklab kafka down`` first)."""
    if broker.status(build) is not None:
        raise broker.KafkaError(f"the Kafka broker of {build} is running: stop it first (clicklab kafka down)")
    removed = []
    for path in (broker.dirs(build).data, written_marker(build, "any").parent, replay_marker(build)):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed
