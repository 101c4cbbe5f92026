"""Bring your own model: import a trained model, train from labelled history, export the current one.

* :func:`~stream.models.importing.import_model` -- a River or scikit-learn estimator from a
  pickle/joblib file becomes checkpoint 1 of an empty state dir (``riverbed model import``);
* :func:`~stream.models.training.train_model` -- the configured model learns labelled history
  prequentially, without Kafka, and becomes checkpoint 1 (``riverbed train``);
* :func:`~stream.models.exporting.export_model` -- the verified model of the newest checkpoint
  as a plain pickle plus a JSON description (``riverbed model export``).

Pickle is code execution. Only :func:`import_model` unpickles a file that is not sealed, and only
the one the user names; from then on the model lives in sealed checkpoints
(:mod:`stream.engine.model_bytes`), which are verified before they are unpickled.
"""

from stream.models.exporting import export_model
from stream.models.importing import import_model
from stream.models.training import train_model

__all__ = ["export_model", "import_model", "train_model"]
