"""riverbed's public Python API: run the service inside your own program, read what it knows.

Everything a program embedding riverbed needs, without reaching into the parts::

    import riverbed

    config = riverbed.load_config("config.toml")   # defaults < file < RIVERBED_* variables
    with riverbed.Service(config) as service:      # the processor, on its own thread and loop
        service.wait_until(lambda counts: counts["joined"] >= 1000, timeout_s=60)
        print(service.status()["models"])          # the live status document
    # leaving the block stops it: finish the batch, checkpoint, return

    riverbed.read_status(config)                   # the newest checkpoint's status document
    riverbed.latest_checkpoint(config)             # its metadata and verified model bytes
    riverbed.load_models(config)                   # the checkpointed ModelSet (verified, then unpickled)
    riverbed.export_model(config, "model.pkl")     # the champion as a plain River pickle (+ model.pkl.json)
    riverbed.import_model(config, "mine.pkl")      # start a state dir from your own River/sklearn model
    riverbed.train_model(config, samples)          # learn labelled history (stream.devtools.datasets) first

``riverbed.Processor`` is the asyncio form (``await Processor(config).run()``). The names are
loaded on first use, so ``import riverbed`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "stream.config",
    "load_config": "stream.config",
    "Processor": "stream.engine.processor",
    "RunSummary": "stream.engine.processor",
    "Service": "riverbed.service",
    "read_status": "stream.ops.status",
    "latest_checkpoint": "riverbed.checkpoints",
    "load_models": "riverbed.checkpoints",
    "RiverbedError": "stream.errors",
    "export_model": "stream.models",
    "import_model": "stream.models",
    "train_model": "stream.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'riverbed' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from riverbed.checkpoints import latest_checkpoint, load_models
    from riverbed.service import Service
    from stream.config import Config, load_config
    from stream.engine.processor import Processor, RunSummary
    from stream.errors import RiverbedError
    from stream.models import export_model, import_model, train_model
    from stream.ops.status import read_status
