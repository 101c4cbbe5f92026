"""Opening a state dir: refusing what is not one, opening RocksDB, naming what is damaged.

An open that fails changes no data file (RocksDB may have written its own LOG). Every failure
is one :class:`~state.errors.StateError` whose message names the path and says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import pathlib
import re
import shutil
import tempfile
import time
from typing import Iterator

import rocksdict

from state.checkpoint_files import FOLDER as CHECKPOINT_FOLDER
from state.checkpoint_files import CheckpointFiles
from state.database import FORMAT_KEY, FORMAT_VALUE, one_line, synced
from state.errors import (
    CorruptStateError,
    IncompatibleStateError,
    MissingStateError,
    StateError,
    StateLockedError,
)

_READ_ONLY_OPEN_ATTEMPTS = 3


def check_directory(path: pathlib.Path, *, read_only: bool) -> None:
    """Refuse paths that are not (and cannot become) a riverbed state dir, before opening."""
    if path.exists() and not path.is_dir():
        raise IncompatibleStateError(
            f"[state] dir {path} is a file, not a directory: point [state] dir elsewhere"
        )
    is_database = (path / "CURRENT").is_file()
    if read_only and not is_database:
        raise MissingStateError(
            f"no riverbed state in {path}: nothing was checkpointed there yet (check "
            f"[state] dir, or run `riverbed run` first)"
        )
    foreign = _foreign_files(path) if path.is_dir() and not is_database else []
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise IncompatibleStateError(
            f"[state] dir {path} is not a riverbed state dir (it holds {shown}): point "
            f"[state] dir at a new or empty directory"
        )
    config = path / "rocksdict-config.json"
    if config.is_file():
        try:
            raw_mode = json.loads(config.read_text()).get("raw_mode")
        except (OSError, ValueError, AttributeError):
            raw_mode = None
        if raw_mode is False:
            raise IncompatibleStateError(
                f"{path} is a rocksdict database in pickle mode, not a riverbed state dir "
                f"(riverbed never unpickles database values): point [state] dir at a new "
                f"or empty directory"
            )


def open_database(
    path: pathlib.Path, files: CheckpointFiles, *, read_only: bool
) -> tuple[rocksdict.Rdict, pathlib.Path | None]:
    """Open the RocksDB database in ``path`` (raw mode); create it unless ``read_only``.

    Returns
    -------
    (db, linked_view)
        ``linked_view`` is the temporary dir of symlinks a read-only open on a read-only
        filesystem opened instead of ``path``; pass it to :func:`remove_linked_view` after
        closing ``db``. ``None`` otherwise.
    """
    options = _options(create=not read_only)
    if read_only:
        # A writer holds the database: its write-ahead log exists and must be replayed.
        access = rocksdict.AccessType.read_only(False)
        attempts = _READ_ONLY_OPEN_ATTEMPTS
    else:
        path.mkdir(parents=True, exist_ok=True)
        access = rocksdict.AccessType.read_write()
        attempts = 1
    for attempt in range(1, attempts + 1):
        try:
            return _open_rdict(path, options, access, read_only=read_only)
        except Exception as exc:  # rocksdict raises plain Exception
            error = translate_open_error(path, files, exc)
            # A read-only open can race the writer deleting a file compaction replaced.
            if attempt == attempts or type(error) is not StateError:
                raise error from exc
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def remove_linked_view(view: pathlib.Path | None) -> None:
    """Delete a linked view :func:`open_database` made (``None`` is fine)."""
    if view is not None:
        shutil.rmtree(view, ignore_errors=True)


def translate_open_error(path: pathlib.Path, files: CheckpointFiles, exc: Exception) -> StateError:
    """The :class:`StateError` for RocksDB's error ``exc`` while opening ``path``."""
    message = str(exc)
    lowered = message.lower()
    if re.search(r"\block\b", lowered):  # the LOCK file; not "block checksum mismatch"
        return StateLockedError(path, message)
    if "comparator" in lowered:
        return IncompatibleStateError(
            f"{path} is a RocksDB database written by something other than riverbed "
            f"({message}): point [state] dir at a new or empty directory"
        )
    if "corruption" in lowered:
        return CorruptStateError(damaged(path, files, exc))
    return StateError(f"cannot open the state dir {path}: {message}")


def check_format(db: rocksdict.Rdict, path: pathlib.Path, *, read_only: bool) -> None:
    """Refuse a database of another format or of something else; claim an empty one."""
    stored = db.get(FORMAT_KEY)
    if stored == FORMAT_VALUE:
        return
    if stored is not None:
        raise IncompatibleStateError(
            f"{path} holds state format {stored!r}, this riverbed reads "
            f"{FORMAT_VALUE!r}: run the riverbed version that wrote it, or start from a "
            f"fresh [state] dir"
        )
    if next(iter(db.keys()), None) is not None:
        raise IncompatibleStateError(
            f"{path} is a RocksDB database but not a riverbed state dir: point "
            f"[state] dir at a new or empty directory"
        )
    if not read_only:  # a fresh database: claim it
        db.put(FORMAT_KEY, FORMAT_VALUE, synced())


@contextlib.contextmanager
def storage_errors_at_open(path: pathlib.Path, files: CheckpointFiles) -> Iterator[None]:
    """Turn a RocksDB read error while opening into one :class:`CorruptStateError`."""
    try:
        yield
    except StateError:
        raise
    except Exception as exc:  # rocksdict raises plain Exception
        raise CorruptStateError(damaged(path, files, exc)) from exc


def damaged(path: pathlib.Path, files: CheckpointFiles, exc: BaseException) -> str:
    """The one line for a damaged state dir: what RocksDB said, and what to do."""
    newest = files.seqs()
    kept = (
        f"; the file copies of checkpoints {', '.join(map(str, newest))} in "
        f"{files.folder} are kept"
        if newest
        else ""
    )
    return (
        f"RocksDB reports the state dir {path} is damaged ({one_line(exc)}): move "
        f"the directory aside (mv {path} {path}.damaged) and restart riverbed to "
        f"start from scratch{kept}; nothing was changed"
    )


def _options(*, create: bool) -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(create)
    options.set_keep_log_file_num(3)
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(10, False)  # most pending-label lookups are for new ids
    options.set_block_based_table_factory(table)
    # The same for the memtable: a put of a new pending entry or learned id first looks the
    # id up, and a miss in the unflushed table now costs a filter probe instead of a skip-list
    # search (0.88 -> 0.41 us per missing key, 200,000 keys). In memory only: the files on
    # disk do not change.
    options.set_memtable_prefix_bloom_ratio(0.1)
    options.set_memtable_whole_key_filtering(True)
    return options


def _open_rdict(
    path: pathlib.Path,
    options: rocksdict.Options,
    access: rocksdict.AccessType,
    *,
    read_only: bool,
) -> tuple[rocksdict.Rdict, pathlib.Path | None]:
    try:
        return rocksdict.Rdict(str(path), options, access_type=access), None
    except OSError as exc:
        # rocksdict writes rocksdict-config.json into the directory on every open, also a
        # read-only one: on a read-only filesystem, open a linked view in a temporary dir.
        if not read_only or not _is_not_writable(exc):
            raise
    view = _linked_view_of(path)
    try:
        return rocksdict.Rdict(str(view), options, access_type=access), view
    except BaseException:
        remove_linked_view(view)
        raise


def _is_not_writable(exc: OSError) -> bool:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return True
    return re.search(r"os error (30|13|1)\)", str(exc)) is not None  # rocksdict leaves errno unset


_NOT_LINKED = re.compile(r"LOCK|LOG(\.old\.\d+)?|rocksdict-config\.json")


def _linked_view_of(path: pathlib.Path) -> pathlib.Path:
    """A temporary dir of symlinks to ``path``'s RocksDB files, for a read-only open."""
    view = pathlib.Path(tempfile.mkdtemp(prefix="riverbed-state-view-"))
    for entry in path.iterdir():
        if not _NOT_LINKED.fullmatch(entry.name):
            (view / entry.name).symlink_to(entry.resolve())
    return view


_ROCKSDB_FILE = re.compile(
    r"LOCK|IDENTITY|CURRENT|LOG(\.old\.\d+)?|MANIFEST-\d+|OPTIONS-\d+(\.dbtmp)?"
    r"|\d+\.(log|sst|dbtmp)|rocksdict-config\.json|" + CHECKPOINT_FOLDER
)


def _foreign_files(path: pathlib.Path) -> list[str]:
    """Names in ``path`` that RocksDB does not write (a crashed first open leaves only its own)."""
    return sorted(p.name for p in path.iterdir() if not _ROCKSDB_FILE.fullmatch(p.name))
