"""Zeppelin notes: the lab as a note for Managed Service for Apache Flink Studio, and any note as a notebook.

One module per concern: :mod:`~clicklab.zeppelin.localprops` (the ``%name(key=value, ...)`` header),
:mod:`~clicklab.zeppelin.note` (read, write and check ``.zpln`` / ``note.json``),
:mod:`~clicklab.zeppelin.results` (cell outputs <-> paragraph results), :mod:`~clicklab.zeppelin.export`
(``clicklab export-zeppelin``), :mod:`~clicklab.zeppelin.forestparams` (the paragraphs that give Studio's
``RANDOM_CUT_FOREST`` its parameters, ``--params``) and :mod:`~clicklab.zeppelin.importer`
(``clicklab import-zeppelin``).
"""
