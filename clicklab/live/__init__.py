"""The live lab: a scenario's traffic generated in real time, and the live stream folders kept small.

Import the module you need; this package re-exports nothing.

* :mod:`clicklab.live.options`: :class:`~clicklab.live.options.LiveOptions`, durations, the live paths.
* :mod:`clicklab.live.generator`: :class:`~clicklab.live.generator.LiveGenerator` (``clicklab generate --live``)
  and :func:`~clicklab.live.generator.run_live`.
* :mod:`clicklab.live.timeline`: the generator's senders over event time, and their records.
* :mod:`clicklab.live.sink`: where the records go: the :class:`~clicklab.live.sink.Sink` interface and
  :class:`~clicklab.live.sink.FileSink` (the tickerstream folder Flink watches).
* :mod:`clicklab.live.sessions`: session definitions and ``labels.csv``.
* :mod:`clicklab.live.send`: sessions requested from the running generator (``clicklab send``), read back.
* :mod:`clicklab.live.process`: the generator in the background: start, status, stop.
* :mod:`clicklab.live.folders`: housekeeping of the live stream folders (``.archive/``, rotation).
* :mod:`clicklab.live.watch`: waiting until a live stream shows something.
"""
