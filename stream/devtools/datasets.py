"""Where replayed samples come from: River's bundled datasets, seeded synthetic streams, files.

Every source is opened as :class:`Samples`: a name, a task (``"binary"``, ``"multiclass"`` or
``"regression"``), a length and the ``(x, y)`` rows themselves, iterated lazily. The rows are
already in message form, so that what River sees in a parity check is exactly what riverbed
receives from Kafka:

- feature names are strings (SEA's ``0, 1, 2`` become ``"0", "1", "2"``);
- numpy scalars become Python ``int``/``float``/``bool``;
- ``datetime`` values become epoch seconds as a ``float`` (a naive datetime is read as UTC, a
  ``date`` as its UTC midnight), so a model can use them as numbers;
- ``None`` and non-finite floats (NaN, ±inf) are dropped: a missing feature is an absent key;
- a target that is ``None`` or NaN becomes ``None``, meaning "this event is never labelled".

The rows of River and synthetic datasets can be iterated more than once and yield the same
samples each time (synthetic streams are seeded).

>>> samples = open_dataset("sea", limit=3, seed=42)
>>> samples.task, samples.n
('binary', 3)
>>> [sorted(x) for x, y in samples.rows]
[['0', '1', '2'], ['0', '1', '2'], ['0', '1', '2']]

Nothing here downloads: a River dataset that would need the network is refused with a
:class:`~stream.errors.RiverbedError` that says to use a local file instead.
"""

from __future__ import annotations

import csv
import datetime as dt
import inspect
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from stream.errors import RiverbedError

TASKS = ("binary", "multiclass", "regression")
SYNTHETIC_DEFAULT_N = 20_000


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`open_dataset` knows about a built-in dataset before opening it."""

    description: str
    task: str
    n: int


@dataclass
class Samples:
    """An opened source of ``(x, y)`` rows in message form.

    Attributes
    ----------
    name
        The dataset name, or the file name for :func:`open_file`.
    task
        ``"binary"``, ``"multiclass"`` or ``"regression"``.
    n
        How many rows :attr:`rows` yields, when known.
    rows
        The ``(x, y)`` pairs, produced lazily.
    stamps
        For a file: one ``(id, ts)`` pair per row, in the same order, each ``None`` when the
        file has no id (ts) column; pass it to :func:`stream.devtools.replay.schedule`.
        ``None`` for built-in datasets.
    has_ids, has_times
        Whether the file's rows carry their own ids (event times).
    """

    name: str
    task: str
    n: int | None
    rows: Iterable[tuple[dict, Any]]
    stamps: Iterable[tuple[str | None, float | None]] | None = None
    has_ids: bool = False
    has_times: bool = False

    def __iter__(self) -> Iterator[tuple[dict, Any]]:
        return iter(self.rows)


class _Replayable:
    """Items made fresh by ``factory`` on every iteration, cut at ``limit``."""

    def __init__(self, factory: Callable[[], Iterable[Any]], limit: int | None):
        self._factory = factory
        self._limit = limit

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(self._factory(), self._limit)


class _ReplayableRows:
    """Rows made fresh by ``factory`` on every iteration, converted and cut at ``limit``."""

    def __init__(self, factory: Callable[[], Iterable[tuple[Any, Any]]], limit: int | None):
        self._factory = factory
        self._limit = limit

    def __iter__(self) -> Iterator[tuple[dict, Any]]:
        rows = ((message_features(x), message_target(y)) for x, y in self._factory())
        return itertools.islice(rows, self._limit)


# ---------------------------------------------------------------------------------------------
# Values in message form
# ---------------------------------------------------------------------------------------------

_PLAIN = (str, bool, int)


def _epoch_seconds(value: dt.date) -> float:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def message_value(value: Any) -> str | bool | int | float | None:
    """One feature or target value as a JSON/msgpack scalar, or ``None`` when it is missing.

    >>> import datetime as dt
    >>> message_value(dt.datetime(1970, 1, 2))
    86400.0
    >>> message_value(float("nan")) is None
    True

    Raises
    ------
    RiverbedError
        When the value is not a scalar (a list, a dict, an object).
    """
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind in _PLAIN or value is None:
        return value
    if isinstance(value, dt.date):
        return _epoch_seconds(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return message_value(item())
    if isinstance(value, (bool, int, str)):  # subclasses, e.g. IntEnum
        return value
    if isinstance(value, float):
        return message_value(float(value))
    raise RiverbedError(
        f"value {value!r} of type {kind.__name__} cannot be published; "
        "features and targets must be numbers, strings or booleans"
    )


def message_features(x: dict) -> dict[str, str | bool | int | float]:
    """``x`` with string keys and JSON/msgpack scalar values; missing values are dropped.

    >>> message_features({0: 1.5, "b": None, "c": "red"})
    {'0': 1.5, 'c': 'red'}
    """
    features = {}
    for key, value in x.items():
        value = message_value(value)
        if value is not None:
            features[key if type(key) is str else str(key)] = value
    return features


def message_target(y: Any) -> str | bool | int | float | None:
    """``y`` as a JSON/msgpack scalar; ``None`` (no label) when it is missing or NaN."""
    return message_value(y)


# ---------------------------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------------------------


def _river_dataset(class_name: str) -> Callable[[int], Iterable]:
    def factory(seed: int) -> Iterable:
        from river import datasets

        return getattr(datasets, class_name)()

    return factory


_RIVER_BUILTINS: dict[str, tuple[str, DatasetInfo]] = {
    "phishing": ("Phishing", DatasetInfo("phishing websites (River, bundled)", "binary", 1250)),
    "bananas": ("Bananas", DatasetInfo("2-D banana-shaped classes (River, bundled)", "binary", 5300)),
    "image_segments": (
        "ImageSegments",
        DatasetInfo("outdoor image segments, 7 classes (River, bundled)", "multiclass", 2310),
    ),
    "shuttle": (
        "Shuttle",
        DatasetInfo("NASA shuttle, rare class 1 = anomaly (River, bundled)", "binary", 49097),
    ),
    "trump_approval": (
        "TrumpApproval",
        DatasetInfo("Trump approval rating from polls (River, bundled)", "regression", 1001),
    ),
    "chick_weights": (
        "ChickWeights",
        DatasetInfo("chick weights by diet and age (River, bundled)", "regression", 578),
    ),
    "airline_passengers": (
        "AirlinePassengers",
        DatasetInfo(
            "monthly airline passengers; month as epoch seconds (River, bundled)", "regression", 144
        ),
    ),
    "sp500_stocks": (
        "SP500Stocks",
        DatasetInfo("S&P 500 daily returns from 10 stocks (River, bundled)", "regression", 1257),
    ),
    "water_flow": (
        "WaterFlow",
        DatasetInfo(
            "hourly water flow; time as epoch seconds (River, bundled)", "regression", 1268
        ),
    ),
}


def _sea(seed: int) -> Iterable:
    from river.datasets import synth

    return synth.SEA(variant=0, seed=seed)


def _agrawal(seed: int) -> Iterable:
    from river.datasets import synth

    return synth.Agrawal(classification_function=0, seed=seed)


def sea_with_drift(seed: int, drift_at: int) -> Iterator[tuple[dict, bool]]:
    """SEA variant 0 for the first ``drift_at`` samples, then SEA variant 3: an abrupt drift.

    The two concepts are two seeded SEA streams chained end to end: ``SEA(variant=0,
    seed=seed)`` then ``SEA(variant=3, seed=seed + 1)`` (another seed, so that the features after
    the change are fresh rather than a repeat of the first ones). Chaining is exact, where
    River's ``ConceptDriftStream`` draws the switch at random around its position: sample
    ``drift_at - 1`` is the last one with ``y = x0 + x1 > 8`` and sample ``drift_at`` the first
    one with ``y = x0 + x1 > 9.5``.

    The stream is endless (as SEA is); cut it with ``itertools.islice``.

    >>> rows = list(itertools.islice(sea_with_drift(seed=1, drift_at=2), 4))
    >>> [y == (x[0] + x[1] > 8) for x, y in rows[:2]], [y == (x[0] + x[1] > 9.5) for x, y in rows[2:]]
    ([True, True], [True, True])
    """
    from river.datasets import synth

    before = itertools.islice(synth.SEA(variant=0, seed=seed), drift_at)
    after = synth.SEA(variant=3, seed=seed + 1)
    return itertools.chain(before, after)


def sea_with_shift(seed: int, shift_at: int, by: float = 5.0) -> Iterator[tuple[dict, bool]]:
    """SEA variant 0 where feature ``2`` moves up by ``by`` from sample ``shift_at`` on: covariate shift.

    SEA's label depends on features 0 and 1 only (``x0 + x1 > 8``); feature 2 is noise, uniform on
    [0, 10]. From ``shift_at`` it is uniform on [``by``, 10 + ``by``]: the inputs change while the
    concept does not, which only a label-free monitor can see (and see before any label arrives).

    >>> rows = list(itertools.islice(sea_with_shift(seed=1, shift_at=2), 4))
    >>> [x[2] >= 5.0 for x, _ in rows[2:]], [y == (x[0] + x[1] > 8) for x, y in rows]
    ([True, True], [True, True, True, True])
    """
    from river.datasets import synth

    for i, (x, y) in enumerate(synth.SEA(variant=0, seed=seed)):
        if i >= shift_at:
            x = {**x, 2: x[2] + by}
        yield x, y


_SYNTHETIC: dict[str, DatasetInfo] = {
    "sea": DatasetInfo("SEA concepts, variant 0 (x0 + x1 > 8), seeded", "binary", SYNTHETIC_DEFAULT_N),
    "agrawal": DatasetInfo(
        "Agrawal loan applications, classification function 0, seeded", "binary", SYNTHETIC_DEFAULT_N
    ),
    "sea_drift": DatasetInfo(
        "SEA variant 0 until drift_at (default n/2), then variant 3 (x0 + x1 > 9.5), seeded",
        "binary",
        SYNTHETIC_DEFAULT_N,
    ),
    "sea_shift": DatasetInfo(
        "SEA variant 0; feature 2 (noise) shifted by +5 from drift_at (default n/2): covariate shift, seeded",
        "binary",
        SYNTHETIC_DEFAULT_N,
    ),
}

DATASETS: dict[str, DatasetInfo] = {
    **{name: info for name, (_, info) in _RIVER_BUILTINS.items()},
    **_SYNTHETIC,
}
"""Every name :func:`open_dataset` accepts, with a description, the task and the default length."""


def snake_case(class_name: str) -> str:
    """River's class name as a dataset name.

    >>> snake_case("ImageSegments"), snake_case("SP500Stocks"), snake_case("SMSSpam")
    ('image_segments', 'sp500_stocks', 'sms_spam')
    """
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()


def _unusable_river_datasets() -> dict[str, str]:
    """River datasets riverbed refuses, by name, with the reason."""
    from river import datasets

    refused = {}
    for class_name in datasets.__all__:
        cls = getattr(datasets, class_name, None)
        if not inspect.isclass(cls) or not issubclass(cls, datasets.base.Dataset):
            continue
        name = snake_case(class_name)
        if name in DATASETS:
            continue
        if issubclass(cls, datasets.base.RemoteDataset):
            refused[name] = (
                f"river.datasets.{class_name} must be downloaded from the internet and riverbed "
                "replays only datasets shipped inside River"
            )
        else:
            refused[name] = (
                f"river.datasets.{class_name} has several targets per sample and a riverbed label "
                "carries exactly one"
            )
    return refused


def _check_limit(limit: int | None) -> None:
    if limit is not None and (type(limit) is not int or limit < 0):
        raise RiverbedError(f"limit must be a non-negative integer or None, got {limit!r}")


def open_dataset(
    name: str, *, limit: int | None = None, seed: int = 42, drift_at: int | None = None
) -> Samples:
    """Open a built-in dataset by name (see :data:`DATASETS`), offline.

    Parameters
    ----------
    name
        A key of :data:`DATASETS`; dashes are accepted for underscores.
    limit
        Yield at most this many samples. Synthetic streams are endless and yield 20,000 samples
        when no limit is given.
    seed
        Seed of the synthetic streams (ignored by River's recorded datasets).
    drift_at
        Index of the first sample of the new concept, for ``sea_drift`` only (default: half the
        number of samples).

    >>> samples = open_dataset("phishing", limit=2)
    >>> samples.task, samples.n, len(list(samples.rows))
    ('binary', 2, 2)

    Raises
    ------
    RiverbedError
        For an unknown name, a dataset that needs a download, or a bad ``limit``/``drift_at``.
    """
    _check_limit(limit)
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        refused = _unusable_river_datasets().get(key)
        valid = ", ".join(DATASETS)
        if refused:
            raise RiverbedError(
                f"dataset {name!r} cannot be replayed: {refused}; "
                f"use one of {valid}, or export it to a local CSV/JSONL file and replay that"
            )
        raise RiverbedError(f"unknown dataset {name!r}; valid names: {valid}")
    info = DATASETS[key]
    if limit is None:
        n = info.n
    elif key in _RIVER_BUILTINS:
        n = min(limit, info.n)
    else:
        n = limit
    if drift_at is not None and key not in ("sea_drift", "sea_shift"):
        raise RiverbedError(f"drift_at applies only to sea_drift and sea_shift, not to {key!r}; leave it out")

    if key in _RIVER_BUILTINS:
        class_name = _RIVER_BUILTINS[key][0]
        factory = lambda: _river_dataset(class_name)(seed)  # noqa: E731
    elif key == "sea":
        factory = lambda: _sea(seed)  # noqa: E731
    elif key == "agrawal":
        factory = lambda: _agrawal(seed)  # noqa: E731
    else:
        if drift_at is None:
            drift_at = n // 2
        if type(drift_at) is not int or drift_at < 0:
            raise RiverbedError(f"drift_at must be a non-negative integer, got {drift_at!r}")
        if key == "sea_shift":
            factory = lambda: sea_with_shift(seed, drift_at)  # noqa: E731
        else:
            factory = lambda: sea_with_drift(seed, drift_at)  # noqa: E731
    return Samples(name=key, task=info.task, n=n, rows=_ReplayableRows(factory, n))


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)\Z")
_BOOLEANS = {"true": True, "false": False}

#: The columns :func:`open_file` reads event ids and event times from unless told otherwise.
DEFAULT_ID_COLUMN = "id"
DEFAULT_TS_COLUMN = "ts"


def parse_cell(cell: str) -> str | bool | int | float | None:
    """A CSV cell as a ``bool``, an ``int``, a ``float`` or the string itself; ``None`` when empty.

    Only plain decimal notation counts as a number (``"1_000"``, ``"nan"`` and ``"inf"`` stay
    strings); ``true`` and ``false`` in any case are booleans (``"0"``, ``"1"``, ``"yes"`` are not).

    >>> parse_cell("42"), parse_cell("-1.5e3"), parse_cell("red"), parse_cell("")
    (42, -1500.0, 'red', None)
    >>> parse_cell("TRUE"), parse_cell(" false "), parse_cell("1")
    (True, False, 1)
    """
    text = cell.strip()
    if not text:
        return None
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    boolean = _BOOLEANS.get(text.lower())
    if boolean is not None:
        return boolean
    return cell


@dataclass(frozen=True)
class FileColumns:
    """Which columns (CSV) or keys (JSONL) of a file hold what; the rest are features.

    Attributes
    ----------
    target
        The label column.
    id, ts
        The event-id and event-time columns; ``None`` means "use :data:`DEFAULT_ID_COLUMN`
        (:data:`DEFAULT_TS_COLUMN`) when the file has it", ``""`` means "the file has none".
        An explicitly named column must exist.
    """

    target: str
    id: str | None = None
    ts: str | None = None

    def resolve(self, names: Iterable[str], where: str) -> "FileColumns":
        """The id and ts columns settled against the column ``names`` a file has."""
        names = set(names)
        chosen = {}
        for role, given, default in (("id", self.id, DEFAULT_ID_COLUMN), ("ts", self.ts, DEFAULT_TS_COLUMN)):
            if given is None:
                chosen[role] = default if default in names else ""
            elif given and given not in names:
                raise RiverbedError(
                    f"{where}: no {role} column {given!r} (--{role}-column); pass a column the "
                    f"file has, or '' for none"
                )
            else:
                chosen[role] = given
        for role in ("id", "ts"):
            if chosen[role] == self.target:
                raise RiverbedError(
                    f"{where}: column {self.target!r} cannot be both the target and the {role}; "
                    f"pass another --{role}-column, or '' for none"
                )
        return FileColumns(self.target, chosen["id"], chosen["ts"])


def parse_event_id(value: Any, where: str) -> str:
    """An event id read from a file: a non-empty string, or an integer written as one.

    >>> parse_event_id(" a-1 ", "f:2"), parse_event_id(17, "f:2")
    ('a-1', '17')
    """
    if type(value) is int:
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise RiverbedError(f"{where}: event id {value!r} must be a non-empty string or an integer")


def parse_event_time(value: Any, where: str) -> float:
    """An event time read from a file as epoch seconds.

    Numbers (and numeric strings) are epoch seconds; other strings are ISO 8601 times, a naive
    one read as UTC.

    >>> parse_event_time("1700000000.5", "f:2"), parse_event_time("1970-01-02T00:00:00", "f:2")
    (1700000000.5, 86400.0)
    """
    seconds = value
    if isinstance(value, str):
        text = value.strip()
        if _INT.match(text) or _FLOAT.match(text):
            seconds = float(text)
        else:
            try:
                return _epoch_seconds(dt.datetime.fromisoformat(text))
            except ValueError:
                seconds = None
    if type(seconds) in (int, float) and math.isfinite(seconds):
        return float(seconds)
    raise RiverbedError(
        f"{where}: event time {value!r} is neither epoch seconds nor an ISO 8601 time; "
        "fix the value or pass --ts-column ''"
    )


def _stamp(row: dict, columns: FileColumns, where: str) -> tuple[str | None, float | None]:
    """Pop the id and ts of ``row`` (absent roles give ``None``)."""
    event_id = event_ts = None
    for role, column in (("id", columns.id), ("ts", columns.ts)):
        if not column:
            continue
        value = row.pop(column, None)
        if value is None or value == "":
            raise RiverbedError(
                f"{where}: no {role} in column {column!r}; every row needs one (or pass --{role}-column '')"
            )
        if role == "id":
            event_id = parse_event_id(value, where)
        else:
            event_ts = parse_event_time(value, where)
    return event_id, event_ts


def _csv_rows(path: Path, columns: FileColumns) -> Iterator[tuple[dict, Any, tuple]]:
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            raise RiverbedError(f"{path}: the file is empty; a CSV needs a header row")
        if columns.target not in header:
            raise RiverbedError(
                f"{path}: no target column {columns.target!r}; columns are: {', '.join(header)}"
            )
        columns = columns.resolve(header, str(path))
        raw = {columns.id, columns.ts} - {""}
        for line, cells in enumerate(reader, start=2):
            if not cells:
                continue
            if len(cells) > len(header):
                raise RiverbedError(
                    f"{path}:{line}: {len(cells)} cells but the header names {len(header)} columns"
                )
            row = {name: (cell if name in raw else parse_cell(cell)) for name, cell in zip(header, cells)}
            stamp = _stamp(row, columns, f"{path}:{line}")
            y = row.pop(columns.target, None)
            yield {k: v for k, v in row.items() if v is not None}, y, stamp


_MISSING = object()


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8-sig") as file:
        for line, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise RiverbedError(f"{path}:{line}: not valid JSON ({reason})") from exc
            if not isinstance(obj, dict):
                raise RiverbedError(f"{path}:{line}: each line must be one JSON object")
            yield line, obj


def _jsonl_rows(path: Path, columns: FileColumns) -> Iterator[tuple[dict, Any, tuple]]:
    resolved = None
    for line, obj in _jsonl_objects(path):
        where = f"{path}:{line}"
        if resolved is None:  # the first object decides which default id/ts keys the file has
            resolved = columns.resolve(obj, where)
        stamp = _stamp(obj, resolved, where)
        y = obj.pop(columns.target, _MISSING)
        try:
            x = message_features(obj)
            y = _MISSING if y is _MISSING else message_target(y)
        except RiverbedError as exc:
            raise RiverbedError(f"{where}: {exc}; flatten nested values") from exc
        yield x, y, stamp


_READERS = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows}


def infer_task(targets: Iterable[Any]) -> str | None:
    """The task implied by target values: numbers only → regression, else classes by count.

    Booleans and strings are classes: two distinct values make a binary task, more a
    multiclass one. ``None`` values (unlabelled rows) are ignored. Integer targets such as
    ``0/1`` count as numbers; pass ``task="binary"`` to :func:`open_file` to say otherwise.

    >>> infer_task([1.5, 2, None]), infer_task(["a", "b", "a"]), infer_task([True, 3, "x"])
    ('regression', 'binary', 'multiclass')
    >>> infer_task([None]) is None
    True
    """
    classes: set = set()
    numbers_only = True
    seen = False
    for y in targets:
        if y is None:
            continue
        seen = True
        if type(y) is bool or not isinstance(y, (int, float)):
            numbers_only = False
        classes.add(y if type(y) is not bool else ("bool", y))
    if not seen:
        return None
    if numbers_only:
        return "regression"
    return "binary" if len(classes) <= 2 else "multiclass"


def open_file(
    path: str,
    *,
    target: str,
    limit: int | None = None,
    task: str | None = None,
    id_column: str | None = None,
    ts_column: str | None = None,
) -> Samples:
    """Open a CSV (with a header row) or JSONL file of samples; ``target`` becomes ``y``.

    CSV cells are parsed by :func:`parse_cell` (numbers, ``true``/``false``, else strings); an
    empty cell is an absent feature (an empty target cell: an event that is never labelled).
    JSONL lines are JSON objects of scalars, kept with their JSON types; ``null`` is absent.
    The id and ts columns are never features: their values become the events' ids and event
    times (:attr:`Samples.stamps`). The file is read once up front to count rows, check the
    columns and infer the task (see :func:`infer_task`), then again, lazily, each time the rows
    are iterated.

    Parameters
    ----------
    path
        A ``.csv``, ``.jsonl`` or ``.ndjson`` file.
    target
        The column (CSV) or key (JSONL) holding the label.
    limit
        Read at most this many rows.
    task
        Override the inferred task (e.g. ``"binary"`` for a 0/1 integer target).
    id_column, ts_column
        The columns of event ids and event times (epoch seconds or ISO 8601). ``None``: ``id``
        and ``ts`` when the file has them (a JSONL file: when its first line has them); ``""``:
        none, ids and times are generated.

    Raises
    ------
    RiverbedError
        When the file is missing or unreadable, has another extension, has no ``target`` or no
        explicitly named id/ts column, a row lacks its id or time, or a line cannot be parsed.
    """
    _check_limit(limit)
    file = Path(path)
    reader = _READERS.get(file.suffix.lower())
    if reader is None:
        raise RiverbedError(
            f"{path}: unsupported file type {file.suffix or '(none)'!r}; "
            f"use one of {', '.join(_READERS)}"
        )
    if not file.is_file():
        raise RiverbedError(f"{path}: no such file; check the path")
    if task is not None and task not in TASKS:
        raise RiverbedError(f"task {task!r} is not one of {', '.join(TASKS)}")
    columns = FileColumns(target, id_column, ts_column)

    def rows() -> Iterator[tuple[dict, Any]]:
        for x, y, _stamp in _read(reader, file, columns):
            yield x, (None if y is _MISSING else y)

    def stamps() -> Iterator[tuple[str | None, float | None]]:
        for _x, _y, stamp in _read(reader, file, columns):
            yield stamp

    n = 0
    targets = []
    target_seen = False
    first_stamp = (None, None)
    for x, y, stamp in itertools.islice(_read(reader, file, columns), limit):
        if n == 0:
            first_stamp = stamp
        n += 1
        target_seen = target_seen or y is not _MISSING
        targets.append(None if y is _MISSING else y)
    if reader is _jsonl_rows and n and not target_seen:
        raise RiverbedError(f"{path}: no line has the target key {target!r}; check --target")
    inferred = infer_task(targets)
    if task is None and inferred is None:
        raise RiverbedError(f"{path}: no row has a value for the target {target!r}; check --target")
    return Samples(
        name=file.name,
        task=task or inferred or "regression",
        n=n,
        rows=_ReplayableRows(rows, limit),
        stamps=_Replayable(stamps, limit),
        has_ids=first_stamp[0] is not None,
        has_times=first_stamp[1] is not None,
    )


def _read(reader, file: Path, columns: FileColumns) -> Iterator[tuple[dict, Any, tuple]]:
    """The rows of ``reader`` with I/O and decoding failures as one-line RiverbedErrors."""
    try:
        yield from reader(file, columns)
    except OSError as exc:
        raise RiverbedError(f"{file}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise RiverbedError(f"{file}: not UTF-8 text ({exc.reason})") from exc
