"""riverbed's benchmark: ``make bench`` or ``python -m bench [options]``.

In one invocation, on one local broker (started on its own ports, 29092/29093, in a temporary
directory, and stopped at the end) and one workload, it measures per model:

- **the limit P**: a bare in-process River loop, same model, same feature dicts;
- **riverbed**: the real processor, end to end, on topics already filled with the workload;
- **faust**: a straightforward faust-streaming implementation (two agents and a table);
- **naive**: a newcomer's kafka-python loop (poll, predict, send per message);

then, for riverbed only, latency at 50% and 80% of its sustained rate with a rate-limited
producer, label freshness, checkpoint duty cycle, and recovery time after ``kill -9``.

It prints progress while it runs, a markdown table at the end, and writes every number to a
JSON file (default ``bench/results/latest.json``). Every row runs in its own process
(:mod:`bench.worker`), so peak RSS is per row. See the README's "Performance" section for what
each number means.
"""
