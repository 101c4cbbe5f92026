"""Reading a model file the user names: its SHA-256, then the object it unpickles to.

Unpickling runs code: only ``riverbed model import PATH`` calls :func:`read_model_file`, on the
file named on its own command line. The object is checked and wrapped by
:mod:`stream.models.importing` and from then on lives in sealed checkpoints only.

Files written by :mod:`joblib` (scikit-learn's usual ``joblib.dump``, compressed or not) and plain
pickles are both read: :func:`joblib.load` reads either (when joblib is installed; else
:func:`pickle.load`).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.errors import RiverbedError


class ModelFileError(RiverbedError):
    """A model file that cannot be read, or does not hold a usable model."""


@dataclass(frozen=True)
class ModelFile:
    """A model file as read: path, size, SHA-256 of its bytes and the unpickled object."""

    path: Path
    size_bytes: int
    sha256: str
    obj: Any


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _unpickle(data: bytes) -> Any:
    try:
        import joblib
    except ImportError:  # joblib comes with scikit-learn; plain pickles need only pickle
        return pickle.loads(data)  # the file the user named on the command line (see the module docstring)
    return joblib.load(io.BytesIO(data))


def read_model_file(path: str | Path) -> ModelFile:
    """Read and unpickle ``path`` (see the module docstring: this runs the file's code).

    Raises
    ------
    ModelFileError
        A missing or unreadable file, or one that does not unpickle (not a pickle, truncated,
        corrupted, or it needs a module that is not installed).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file; check the path") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        obj = _unpickle(data)
    except ModuleNotFoundError as exc:
        raise ModelFileError(
            f"{path} needs the Python module {exc.name!r}, which is not installed here; install the "
            "package the model was made with (and the same version), then import again"
        ) from None
    except Exception as exc:  # a file that is no pickle, or a damaged one, fails in many ways
        raise ModelFileError(
            f"{path} is not a readable pickle or joblib file ({_first_line(exc)}); "
            "pass a file written by pickle.dump or joblib.dump"
        ) from None
    return ModelFile(path, len(data), sha256, obj)


def sidecar_path(path: str | Path) -> Path:
    """The JSON description next to an exported model: ``PATH.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def exported_n_learned(model_file: ModelFile) -> int | None:
    """``n_learned`` from the ``PATH.json`` that ``riverbed model export`` wrote for this very file.

    ``None`` when there is no such file, it does not parse, or its SHA-256 is not the file's.
    """
    try:
        described = json.loads(sidecar_path(model_file.path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(described, dict) or described.get("sha256") != model_file.sha256:
        return None
    n = described.get("n_learned")
    return n if type(n) is int and n >= 0 else None
