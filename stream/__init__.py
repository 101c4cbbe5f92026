"""riverbed's streaming side: everything that touches Kafka or the outside world.

Config, codecs, the event-time merge, the processor loop, batched output, Prometheus metrics,
the CLI, the local broker launcher and dataset replay live here. Pure River logic lives in
:mod:`learners`; persistence in :mod:`state`.
"""

__version__ = "0.1.0"
