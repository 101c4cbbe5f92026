"""riverbed's streaming side: everything that touches Kafka or the outside world.

The folders are the roles (see ``docs/architecture.md``):

- :mod:`stream.engine` -- the hot path: codecs, the event-time merge, the record handlers, the
  checkpointer, batched output, Kafka I/O, telemetry, and the :class:`~stream.engine.service.Service`
  that wires them;
- :mod:`stream.connect` -- how riverbed reaches a cluster: topic administration;
- :mod:`stream.ops` -- what an operator reads: the status document, the HTTP API and status page;
- :mod:`stream.cli` -- the ``riverbed`` command, the report and the demo;
- :mod:`stream.devtools` -- the embedded local broker, datasets, replay and the label oracle.

Pure River logic lives in :mod:`learners`, persistence in :mod:`state`; the public Python API
is :mod:`riverbed`.
"""

__version__ = "0.1.0"
