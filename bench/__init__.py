"""riverbed's benchmark: ``make bench`` or ``python -m bench [options]``.

In one invocation, on one local broker (started on its own ports, 29092/29093, in a temporary
directory, and stopped at the end) and one workload, it measures per model:

- **the limit P**: a bare in-process River loop, same model, same feature dicts;
- **riverbed**: the real processor, end to end, on topics already filled with the workload;
- **faust**: a straightforward faust-streaming implementation (two agents and a table);
- **bytewax**: a bytewax 0.21 dataflow, recovery on (:mod:`bench.peers.bytewax_row`): a join keyed
  by id, the model in a ``stateful_map`` under one constant key; checked like every peer row:
  every event predicted once, every label learned once, accuracy within 0.01 of the bare loop's
  (runs of >= 10,000 events);
- **naive**: a newcomer's kafka-python loop (poll, predict, send per message);

then, for riverbed only, latency at 10%, 50% and 80% of its sustained rate on the core the
latency runs pin it to, with a rate-limited librdkafka producer (after one unrecorded warm-up
run for the broker), label freshness, checkpoint duty cycle, and recovery time after ``kill -9``.

- ``--rows guarantees``: throughput and latency with ``[output] guarantee`` exactly_once and
  at_least_once on the same workload, and their ratio;
- ``--rows soak`` (not a default row; ``make bench-soak``): 1,000,000 events with labels through a
  live processor at half its rate; RSS, pending entries, learned ids, state-dir size and GC pauses.

With ``--bootstrap`` the bench uses the ``[kafka]`` security keys of ``--config`` /
``RIVERBED_CONFIG`` / ``RIVERBED_KAFKA_*`` for every client it makes (the password only from
``RIVERBED_KAFKA_SASL_PASSWORD`` or its file); the Faust row is plaintext only and skipped
under TLS or SASL.

It prints progress while it runs, a markdown table at the end, and writes every number to a
JSON file (default ``bench/results/latest.json``). Every row runs in its own process
(:mod:`bench.worker`), so peak RSS is per row. See the README's "Performance" section for what
each number means.
"""
