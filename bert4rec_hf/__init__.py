"""bert4rec-hf: BERT4Rec as a Hugging Face pretrained model.

The top level holds what a run, a model and a recommendation need; everything
else is importable from its submodule (``bert4rec_hf.data``,
``bert4rec_hf.evaluation``, ``bert4rec_hf.export``, ``bert4rec_hf.training``,
...). Names that used to live here still import, with a ``FutureWarning``
naming their home.
"""

import importlib
import warnings
from typing import Any

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from .configuration_bert4rec import Bert4RecConfig
from .data import (
    DataCollatorForMaskedItemPrediction,
    DataCollatorForNextItemPrediction,
    load_interactions,
    read_interactions,
)
from .evaluation import RankingEvaluator
from .modeling_bert4rec import Bert4RecForMaskedItemPrediction, Bert4RecModel
from .quick_start import evaluate_saved_model, run_bert4rec
from .recommendation import Bert4RecRecommender, Recommendation
from .tokenization_bert4rec import ItemTokenizer
from .training import Bert4RecTrainer, load_config
from .training.tuning import tune_bert4rec

__version__ = "0.1.0"

AutoConfig.register(Bert4RecConfig.model_type, Bert4RecConfig, exist_ok=True)
AutoModel.register(Bert4RecConfig, Bert4RecModel, exist_ok=True)
AutoModelForMaskedLM.register(Bert4RecConfig, Bert4RecForMaskedItemPrediction, exist_ok=True)
# save_pretrained then copies the modeling code and writes `auto_map`, so a saved
# folder loads with trust_remote_code=True where this package is not installed.
Bert4RecConfig.register_for_auto_class()
Bert4RecModel.register_for_auto_class("AutoModel")
Bert4RecForMaskedItemPrediction.register_for_auto_class("AutoModelForMaskedLM")

# names that lived at the top level before it was cut down, and their home now
MOVED = {
    "Bert4RecPreTrainedModel": "bert4rec_hf.modeling_bert4rec",
    "MaskedItemPredictionOutput": "bert4rec_hf.modeling_bert4rec",
    "build_sequences": "bert4rec_hf.data",
    "leave_one_out": "bert4rec_hf.data",
    "load_processed": "bert4rec_hf.data",
    "save_processed": "bert4rec_hf.data",
    "count_item_popularity": "bert4rec_hf.evaluation",
    "ranking_metrics": "bert4rec_hf.evaluation",
    "Bert4RecTopK": "bert4rec_hf.export",
    "export_model": "bert4rec_hf.export",
    "export_onnx": "bert4rec_hf.export",
    "extend_vocabulary": "bert4rec_hf.finetuning",
    "recommend": "bert4rec_hf.recommendation",
    "ConfigError": "bert4rec_hf.training",
    "TimeBudgetCallback": "bert4rec_hf.training",
    "HyperSpace": "bert4rec_hf.training.hyper_space",
    "HyperSpaceError": "bert4rec_hf.training.hyper_space",
    "parse_hyper_space": "bert4rec_hf.training.hyper_space",
    "read_hyper_space": "bert4rec_hf.training.hyper_space",
    "Bert4RecTuningTrainer": "bert4rec_hf.training.tuning",
    "TuningResult": "bert4rec_hf.training.tuning",
}


def __getattr__(name: str) -> Any:
    if name not in MOVED:
        raise AttributeError(f"module 'bert4rec_hf' has no attribute {name!r}")
    warnings.warn(
        f"bert4rec_hf.{name} moved: import it from {MOVED[name]} (the top level keeps the main names only)",
        FutureWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(MOVED[name]), name)


__all__ = [
    "Bert4RecConfig",
    "Bert4RecForMaskedItemPrediction",
    "Bert4RecModel",
    "Bert4RecRecommender",
    "Bert4RecTrainer",
    "DataCollatorForMaskedItemPrediction",
    "DataCollatorForNextItemPrediction",
    "ItemTokenizer",
    "RankingEvaluator",
    "Recommendation",
    "__version__",
    "evaluate_saved_model",
    "load_config",
    "load_interactions",
    "read_interactions",
    "run_bert4rec",
    "tune_bert4rec",
]
