"""The ``riverbed`` command line.

Every command takes ``--config PATH`` before the subcommand (or ``RIVERBED_CONFIG``). A user
error prints one line, ``riverbed: error: <what is wrong and what to do>``, and exits non-zero,
without a traceback. Exit codes: 0 success, 1 a broker, port or topic problem (and ``broker
status`` when nothing answers), 2 a bad argument, config or model spec, 130 interrupted
(Ctrl-C), 141 stdout closed early (``riverbed status | head``), as for a program that SIGPIPE
ends.

This module imports nothing heavy (no River, Kafka client or RocksDB) at import time, so that
``riverbed --help`` answers at once: each command imports what it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from typing import NoReturn, Sequence

from stream import __version__
from stream.config import Config, load_config
from stream.errors import ConfigError, RiverbedError

log = logging.getLogger("riverbed")

#: Modules whose error classes are user errors too, found in :data:`sys.modules` only once
#: imported (an error of a module never imported cannot have been raised).
_USER_ERROR_CLASSES = (("learners.errors", "LearnerError"), ("state.errors", "StateError"))
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program a closed pipe ends


def user_error_types() -> tuple[type[BaseException], ...]:
    """:class:`RiverbedError` and the error classes of the pure packages already imported."""
    found: list[type[BaseException]] = [RiverbedError]
    for module_name, class_name in _USER_ERROR_CLASSES:
        module = sys.modules.get(module_name)
        if module is not None:
            found.append(getattr(module, class_name))
    return tuple(found)


class _Parser(argparse.ArgumentParser):
    """argparse with riverbed's one-line error format."""

    def error(self, message: str) -> NoReturn:  # pragma: no cover - exercised through main()
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def _non_negative(convert, noun: str):
    """An argparse type: ``convert(text)``, refused with a clear message when not >= 0."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
        return value

    return parse


_non_negative_float = _non_negative(float, "a number")
_count = _non_negative(int, "a whole number")


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value




def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="riverbed",
        description="Streaming online learning on Kafka: predict every event at once, learn from "
        "delayed labels, checkpoint exactly once.",
        epilog="Configuration: defaults < --config file (or RIVERBED_CONFIG) < RIVERBED_<SECTION>_<KEY> "
        "environment variables. See README.md for every key.",
    )
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: $RIVERBED_CONFIG, else built-in defaults)")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="override [log] level")
    parser.add_argument("--version", action="version", version=f"riverbed {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="predict events, join labels, learn and checkpoint until stopped")
    run.add_argument(
        "--exit-when-idle", type=_non_negative_float, metavar="SECONDS",
        help="once caught up and idle for SECONDS, checkpoint and exit 0",
    )
    run.add_argument(
        "--role", choices=("all", "trainer", "scorer"), default=None,
        help="all: one process predicts and learns (the default, [scale] role); trainer: learn from the served "
        "topic and labels, publish model snapshots; scorer: one of many replicas predicting events with the "
        "newest snapshot (see the README, 'Scale out')",
    )

    broker = sub.add_parser("broker", help="the embedded local Apache Kafka broker (KRaft, single node)")
    broker_sub = broker.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    broker_sub.required = True
    broker_sub.add_parser("start", help="download (once) and start the local broker; idempotent")
    broker_sub.add_parser("stop", help="stop the local broker")
    broker_sub.add_parser("status", help="exit 0 when a broker answers, 1 otherwise")

    topics = sub.add_parser("topics", help="topic administration")
    topics_sub = topics.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    topics_sub.required = True
    topics_sub.add_parser(
        "create", help="create the events, labels, predictions and deadletter topics, and label-requests when "
        "[labels] request_budget > 0 (idempotent)"
    )

    produce = sub.add_parser("produce", help="replay a dataset as events and delayed labels")
    source = produce.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="NAME", help="a River dataset shipped with River, or sea, agrawal, sea_drift")
    source.add_argument("--file", metavar="PATH", help="a .csv or .jsonl file (needs --target)")
    produce.add_argument("--target", metavar="COL", help="the label column of --file")
    produce.add_argument("--label-delay", type=_count, default=0, metavar="N",
                         help="reveal the label of event i just before event i+N (0: just after event i)")
    produce.add_argument("--label-fraction", type=_fraction, default=1.0, metavar="F",
                         help="publish labels for this fraction of events (seeded)")
    produce.add_argument("--limit", type=_count, metavar="N", help="publish at most N events")
    produce.add_argument("--seed", type=int, default=42, help="seed for synthetic data and label sampling")
    produce.add_argument("--drift-at", type=_count, metavar="N", help="sea_drift, sea_shift: event index of the change")
    produce.add_argument("--format", choices=("msgpack", "json"), default="msgpack", help="message encoding")
    produce.add_argument("--start-ts", type=_non_negative_float, metavar="EPOCH_S",
                         help="event time of the first event (default: now, whole seconds)")
    produce.add_argument("--interval-s", type=_non_negative_float, default=1.0, metavar="S",
                         help="event time between consecutive events")
    produce.add_argument("--id-prefix", metavar="P", help="event ids are P-0, P-1, … (default: the dataset name)")
    produce.add_argument("--id-column", metavar="COL",
                         help="--file: the column of event ids (default: 'id' when present; '' for none)")
    produce.add_argument("--ts-column", metavar="COL",
                         help="--file: the column of event times, epoch seconds or ISO 8601 "
                              "(default: 'ts' when present; '' for none)")
    produce.add_argument("--no-progress", action="store_true", help="no progress bar")

    tail = sub.add_parser("tail", help="print decoded messages of a topic as JSON lines")
    tail.add_argument("--topic", help="topic name (default: [topics] predictions)")
    tail.add_argument("--limit", type=_count, metavar="N", help="stop after N messages")
    tail.add_argument("--from-end", action="store_true", help="only messages that arrive from now on")
    tail.add_argument("--idle-timeout", type=_non_negative_float, default=2.0, metavar="S",
                      help="stop when nothing arrives for S seconds (0: follow forever)")

    status = sub.add_parser("status", help="model, metrics, counts and offsets of the latest checkpoint")
    status.add_argument("--json", action="store_true", help="machine-readable JSON")

    report = sub.add_parser("report", help="plot rolling and cumulative metrics per model, drift and promotions (PNG)")
    report.add_argument("--out", required=True, metavar="FILE.png", help="where to write the plot")
    report.add_argument("--metric", action="append", metavar="NAME", help="only this metric (repeatable; default: all)")
    report.add_argument("--title", help="the plot's title")

    oracle = sub.add_parser("oracle", help="simulate the labeller: answer label requests with a dataset's true labels")
    oracle.add_argument("--dataset", required=True, metavar="NAME", help="the dataset the events were replayed from")
    oracle.add_argument("--limit", type=_count, metavar="N", help="as given to produce")
    oracle.add_argument("--seed", type=int, default=42, help="as given to produce (synthetic datasets)")
    oracle.add_argument("--drift-at", type=_count, metavar="N", help="as given to produce (sea_drift)")
    oracle.add_argument("--id-prefix", metavar="P", help="as given to produce (default: the dataset name)")
    oracle_delay = oracle.add_mutually_exclusive_group()
    oracle_delay.add_argument("--delay-s", type=_non_negative_float, metavar="S",
                              help="answer S seconds of event time after the request (default 0)")
    oracle_delay.add_argument("--delay-events", type=_count, metavar="N",
                              help="answer just before the N-th further event (events --interval-s apart)")
    oracle.add_argument("--interval-s", type=_non_negative_float, default=1.0, metavar="S",
                        help="event time between consecutive events, as given to produce (for --delay-events)")
    oracle.add_argument("--format", choices=("msgpack", "json"), default="msgpack", help="label encoding")
    oracle.add_argument("--exit-when-idle", type=_non_negative_float, metavar="S",
                        help="exit once no request arrived for S seconds (default: run until interrupted)")

    _add_model_parsers(sub)

    demo = sub.add_parser("demo", help="the embedded default end to end, with a readable report")
    demo.add_argument("--dataset", default="phishing", help="dataset to replay (default: phishing)")
    demo.add_argument("--label-delay", type=_count, default=100, metavar="N", help="label delay in events (default 100)")
    demo.add_argument("--limit", type=_count, metavar="N", help="publish at most N events")
    return parser


def _add_model_parsers(sub) -> None:
    """``model import``, ``model export`` and ``train``: bring your own model (README, "Bring your own model")."""
    model = sub.add_parser("model", help="bring your own model: import a trained one, export the current one")
    model_sub = model.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    model_sub.required = True
    imported = model_sub.add_parser(
        "import", help="a River or scikit-learn (partial_fit) model from a pickle/joblib file becomes checkpoint 1 "
        "(unpickling runs the file's code: only import files you trust)")
    imported.add_argument("path", metavar="PATH", help="the pickle or joblib file")
    imported.add_argument("--version", dest="start_version", type=_count, metavar="N",
                          help="labels the model already learned; predictions' version continues from N "
                               "(default: what the file reliably says, else 0)")
    imported.add_argument("--features", metavar="A,B,C",
                          help="scikit-learn: the column order (default: the estimator's feature_names_in_)")
    imported.add_argument("--replace", action="store_true", help="discard a state dir that already has a checkpoint")
    exported = model_sub.add_parser("export", help="the current verified model as a plain pickle plus PATH.json")
    exported.add_argument("--out", required=True, metavar="PATH", help="where to write the pickle")
    exported.add_argument("--model", metavar="NAME", help="which model (default: the champion)")

    train = sub.add_parser("train", help="learn the configured model from labelled history (no Kafka) into checkpoint 1")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="NAME", help="a River dataset shipped with River, or sea, agrawal, sea_drift")
    source.add_argument("--file", metavar="PATH", help="a .csv or .jsonl file, read as `produce --file` reads it (needs --target)")
    train.add_argument("--target", metavar="COL", help="the label column of --file")
    train.add_argument("--limit", type=_count, metavar="N", help="learn at most N rows")
    train.add_argument("--seed", type=int, default=42, help="seed of synthetic datasets")
    train.add_argument("--drift-at", type=_count, metavar="N", help="sea_drift, sea_shift: row index of the change")
    train.add_argument("--id-column", metavar="COL", help="--file: the event-id column, not a feature (default: 'id' when present)")
    train.add_argument("--ts-column", metavar="COL", help="--file: the event-time column, not a feature (default: 'ts' when present)")
    train.add_argument("--replace", action="store_true", help="discard a state dir that already has a checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(id_prefix=None, start_ts=None)


class _TransientCoordinatorErrors(logging.Filter):
    """aiokafka logs ERROR while a fresh broker elects its group coordinator; it retries itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "GroupCoordinatorNotAvailable" not in record.getMessage()


#: kafka-python's and aiokafka's loggers: INFO for every connection, so WARNING unless debugging.
KAFKA_CLIENT_LOGGERS = ("kafka", "aiokafka")


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; the Kafka clients only from WARNING (INFO at DEBUG)."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in KAFKA_CLIENT_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "DEBUG" else logging.INFO)
    logging.getLogger("aiokafka.consumer.group_coordinator").addFilter(_TransientCoordinatorErrors())


# -- commands ------------------------------------------------------------------------------


def validate_model_spec(cfg: Config) -> None:
    """Build the model set of ``cfg`` once, so a bad preset, task or metric is refused before
    any broker is started or topic created.

    Raises
    ------
    LearnerError, RiverbedError
        With a one-line message, for an unknown preset, task, metric or challenger.
    """
    from stream.engine.processor import build_model_set

    build_model_set(cfg)


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    import asyncio

    validate_model_spec(cfg)
    if args.role is not None:
        cfg = cfg.replace(scale={"role": args.role})
    if cfg.scale.role == "trainer":
        from stream.scale.trainer import Trainer as Processor
    elif cfg.scale.role == "scorer":
        from stream.scale.scorer import Scorer as Processor  # type: ignore[assignment]
    else:
        from stream.engine.processor import Processor  # type: ignore[assignment]

    async def main() -> None:
        processor = Processor(cfg, exit_when_idle=args.exit_when_idle)
        processor.install_signal_handlers()
        summary = await processor.run()
        log.info(
            "stopped after %d records in %.1f s (%d checkpoints; counts %s)",
            summary.processed, summary.seconds, summary.checkpoints, summary.counts,
        )

    asyncio.run(main())
    return 0


def cmd_broker(cfg: Config, args: argparse.Namespace) -> int:
    from stream.devtools.broker import LocalBroker

    if cfg.kafka.bootstrap_servers and args.action != "status":
        raise ConfigError(
            f"[kafka] bootstrap_servers is set ({cfg.kafka.bootstrap_servers}): riverbed does not manage that "
            "cluster; unset it to use the embedded local broker"
        )
    if args.action == "status" and cfg.kafka.bootstrap_servers:
        from stream.connect.bootstrap import resolve_bootstrap
        from stream.connect.topics import cluster_info

        info = cluster_info(resolve_bootstrap(cfg))
        if info is None:
            print(f"no broker answers on {cfg.kafka.bootstrap_servers}")
            return 1
        print(f"Kafka cluster {info['cluster_id']} answers on {cfg.kafka.bootstrap_servers}")
        return 0
    broker = LocalBroker(cfg)
    if args.action == "start":
        if broker.start():
            print(f"started Kafka on {broker.bootstrap} (data and logs in {broker.dir})")
        else:
            print(f"a broker is already running on {broker.bootstrap}")
        return 0
    if args.action == "stop":
        print(f"stopped the broker on {broker.bootstrap}" if broker.stop() else f"no local broker was running on {broker.bootstrap}")
        return 0
    info = broker.status()
    if info is None:
        print(f"no broker answers on {broker.bootstrap}")
        return 1
    print(f"Kafka cluster {info['cluster_id']} answers on {broker.bootstrap} (pid {info.get('pid')}, dir {info.get('dir')})")
    return 0


def cmd_topics(cfg: Config, args: argparse.Namespace) -> int:
    from stream.connect.bootstrap import ensure_kafka
    from stream.connect.topics import create_topics

    bootstrap = ensure_kafka(cfg)
    names = cfg.topic_names()
    created = create_topics(bootstrap, names, cfg.kafka.partitions)
    for name in names:
        print(f"{name}: {'created' if name in created else 'exists'}")
    return 0


def _open_source(args: argparse.Namespace):
    from stream.devtools.datasets import open_dataset, open_file

    if args.file:
        if not args.target:
            raise ConfigError("--file needs --target COL naming the label column")
        samples = open_file(args.file, target=args.target, limit=args.limit,
                            id_column=args.id_column, ts_column=args.ts_column)
        _refuse_generated_stamp_options(args, samples)
        return samples
    for option in ("id_column", "ts_column"):
        if getattr(args, option) is not None:
            raise ConfigError(f"--{option.replace('_', '-')} applies only to --file; leave it out")
    return open_dataset(args.dataset, limit=args.limit, seed=args.seed, drift_at=args.drift_at)


def _refuse_generated_stamp_options(args: argparse.Namespace, samples) -> None:
    """``--id-prefix``/``--start-ts`` would be ignored for a file with its own ids/times: refuse."""
    if samples.has_ids and args.id_prefix is not None:
        raise ConfigError(
            f"{args.file} has its own event ids, so --id-prefix would be ignored; leave it out, "
            "or pass --id-column '' to number the events"
        )
    if samples.has_times and args.start_ts is not None:
        raise ConfigError(
            f"{args.file} has its own event times, so --start-ts would be ignored; leave it out, "
            "or pass --ts-column '' to generate times"
        )


def cmd_produce(cfg: Config, args: argparse.Namespace) -> int:
    from stream.connect.bootstrap import ensure_kafka
    from stream.devtools.replay import produce, schedule
    from stream.connect.topics import create_topics

    samples = _open_source(args)
    bootstrap = ensure_kafka(cfg)
    t = cfg.topics
    create_topics(bootstrap, cfg.topic_names(), cfg.kafka.partitions)
    start_ts = args.start_ts if args.start_ts is not None else float(int(time.time()))
    records = schedule(
        samples.rows,
        label_delay=args.label_delay,
        label_fraction=args.label_fraction,
        seed=args.seed,
        start_ts=start_ts,
        interval_s=args.interval_s,
        id_prefix=args.id_prefix or samples.name,
        stamps=samples.stamps,
    )
    result = produce(bootstrap, t, records, fmt=args.format, total=samples.n, progress=not args.no_progress)
    print(
        f"published {result['events']} events to {t.events} and {result['labels']} labels to {t.labels} "
        f"in {result['seconds']:.1f} s"
    )
    return 0


def cmd_tail(cfg: Config, args: argparse.Namespace) -> int:
    from stream.connect.bootstrap import resolve_bootstrap
    from stream.connect.topics import topic_partitions

    topic = args.topic or cfg.topics.predictions
    bootstrap = resolve_bootstrap(cfg)
    partitions = topic_partitions(bootstrap, topic, timeout_s=cfg.kafka.request_timeout_s)
    with contextlib.closing(_tailed_lines(bootstrap, topic, partitions, args)) as lines:  # consumer closed on any exit
        for line in lines:
            print(line, flush=True)
    return 0


def _tailed_lines(bootstrap: str, topic: str, partitions: list[int], args: argparse.Namespace):
    """The messages of ``topic`` as JSON lines, until ``--limit`` or ``--idle-timeout``.

    Raises
    ------
    KafkaUnavailableError
        When the cluster stops answering while the messages are read.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    from stream.engine.codecs import decode_any
    from stream.errors import KafkaUnavailableError

    from stream.connect.security import carried_security

    try:
        consumer = KafkaConsumer(
            **carried_security(bootstrap),
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="latest" if args.from_end else "earliest",
            consumer_timeout_ms=int(args.idle_timeout * 1000) if args.idle_timeout else float("inf"),
        )
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"cannot read {topic} from Kafka at {bootstrap} ({exc}); check the broker"
        ) from exc
    try:
        consumer.assign([TopicPartition(topic, partition) for partition in partitions])
        n = 0
        for record in consumer:
            line = {"topic": record.topic, "partition": record.partition, "offset": record.offset,
                    "key": record.key.decode("utf-8", "replace") if record.key else None,
                    "value": decode_any(record.value)}
            if record.headers:
                line["headers"] = {k: v.decode("utf-8", "replace") for k, v in record.headers}
            yield json.dumps(line, default=repr)
            n += 1
            if args.limit is not None and n >= args.limit:
                break
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"reading {topic} from Kafka at {bootstrap} failed ({exc}); check the broker"
        ) from exc
    finally:
        consumer.close()


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    from stream.ops.status import format_status, read_status

    status = read_status(cfg)
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else format_status(status))
    return 0


def cmd_report(cfg: Config, args: argparse.Namespace) -> int:
    from stream.cli.report import render_report
    from stream.ops.status import newest_checkpoint

    ckpt, _, _ = newest_checkpoint(cfg)
    out = render_report(ckpt.meta, args.out, metrics=args.metric, title=args.title)
    print(f"wrote {out} ({len(ckpt.meta.get('history', {}).get('points', []))} points, checkpoint {ckpt.seq})")
    return 0


def cmd_oracle(cfg: Config, args: argparse.Namespace) -> int:
    from stream.connect.bootstrap import ensure_kafka
    from stream.devtools.datasets import open_dataset
    from stream.devtools.oracle import Oracle, truth_from_samples
    from stream.connect.topics import create_topics

    samples = open_dataset(args.dataset, limit=args.limit, seed=args.seed, drift_at=args.drift_at)
    truth = truth_from_samples(samples.rows, args.id_prefix or samples.name)
    bootstrap = ensure_kafka(cfg)
    create_topics(bootstrap, [cfg.labels.request_topic, cfg.topics.labels], cfg.kafka.partitions)
    with Oracle(
        bootstrap, cfg.labels.request_topic, cfg.topics.labels, truth,
        delay_s=args.delay_s, delay_events=args.delay_events, interval_s=args.interval_s,
        fmt=args.format, group_id=f"{cfg.kafka.group_id}-oracle",
    ) as oracle:
        log.info("answering label requests on %s with %d true labels of %s", cfg.labels.request_topic, len(truth), samples.name)
        while True:
            counts = oracle.answer(idle_s=args.exit_when_idle or 1.0)
            if args.exit_when_idle is not None:
                break
    print(
        f"answered {counts['labels']} of {counts['requests']} label requests on {cfg.labels.request_topic} "
        f"({counts['duplicate']} duplicate, {counts['unknown']} unknown ids) into {cfg.topics.labels}"
    )
    return 0


def cmd_model(cfg: Config, args: argparse.Namespace) -> int:
    if args.action == "import":
        from stream.models.importing import import_model, parse_feature_list

        report = import_model(cfg, args.path, version=args.start_version,
                              features=parse_feature_list(args.features), replace=args.replace)
        print("\n".join(report.lines()))
        return 0
    from stream.models.exporting import export_model
    from stream.models.model_files import sidecar_path

    described = export_model(cfg, args.out, model=args.model)
    print(
        f"wrote {args.out} ({described['size_bytes']} bytes, sha256 {described['sha256']}): {described['role']} "
        f"{described['name']!r} v{described['version']} of checkpoint {described['checkpoint']}; "
        f"described in {sidecar_path(args.out)}"
    )
    return 0


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from stream.models.training import train_model

    samples = _open_source(args)
    report = train_model(cfg, samples, replace=args.replace, progress=not args.no_progress)
    print("\n".join(report.lines()))
    return 0


def cmd_demo(cfg: Config, args: argparse.Namespace) -> int:
    from stream.cli.demo import run_demo

    return run_demo(cfg, dataset=args.dataset, label_delay=args.label_delay, limit=args.limit)


COMMANDS = {
    "run": cmd_run,
    "broker": cmd_broker,
    "topics": cmd_topics,
    "produce": cmd_produce,
    "tail": cmd_tail,
    "status": cmd_status,
    "oracle": cmd_oracle,
    "report": cmd_report,
    "demo": cmd_demo,
    "model": cmd_model,
    "train": cmd_train,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``riverbed`` command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        cfg = load_config(args.config)
        configure_logging(args.log_level or cfg.log.level)
        status = COMMANDS[args.command](cfg, args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except KeyboardInterrupt:
        print("riverbed: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if not isinstance(exc, user_error_types()):
            raise
        print(f"riverbed: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail once more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
