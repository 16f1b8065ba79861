"""One call from an interaction log to a trained, evaluated, saved BERT4Rec.

``run_bert4rec(dataset="ml-100k")`` is the counterpart of RecBole's
``run_recbole(model="BERT4Rec", dataset="ml-100k")``: it resolves the layered
configuration, prepares leave-one-out data, trains with the HF ``Trainer``
(early stopping on a validation metric, best model restored), evaluates
validation and test, and writes a hub-ready model folder.

A facade: the pipeline lives in ``bert4rec_hf.training.pipeline`` and the
configuration in ``bert4rec_hf.training.config``; their names are re-exported here.
"""

from .training import pipeline
from .training.config import ConfigError, RunConfig, load_config
from .training.pipeline import *  # noqa: F403 (the pipeline's public names, listed once in its __all__)

__all__ = ["ConfigError", "RunConfig", "load_config", *pipeline.__all__]
