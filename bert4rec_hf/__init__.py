"""bert4rec-hf: BERT4Rec as a Hugging Face pretrained model."""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from .configuration_bert4rec import Bert4RecConfig
from .data import (
    DataCollatorForMaskedItemPrediction,
    DataCollatorForNextItemPrediction,
    build_sequences,
    leave_one_out,
    load_interactions,
    load_processed,
    read_interactions,
    save_processed,
)
from .evaluation import RankingEvaluator, count_item_popularity, ranking_metrics
from .export import Bert4RecTopK, export_model, export_onnx
from .finetuning import extend_vocabulary
from .modeling_bert4rec import (
    Bert4RecForMaskedItemPrediction,
    Bert4RecModel,
    Bert4RecPreTrainedModel,
    MaskedItemPredictionOutput,
)
from .quick_start import evaluate_saved_model, run_bert4rec
from .recommendation import Bert4RecRecommender, Recommendation, recommend
from .tokenization_bert4rec import ItemTokenizer
from .training import Bert4RecTrainer, ConfigError, TimeBudgetCallback, load_config
from .training.hyper_space import HyperSpace, HyperSpaceError, parse_hyper_space, read_hyper_space
from .training.tuning import Bert4RecTuningTrainer, TuningResult, tune_bert4rec

__version__ = "0.1.0"

AutoConfig.register(Bert4RecConfig.model_type, Bert4RecConfig, exist_ok=True)
AutoModel.register(Bert4RecConfig, Bert4RecModel, exist_ok=True)
AutoModelForMaskedLM.register(Bert4RecConfig, Bert4RecForMaskedItemPrediction, exist_ok=True)
# save_pretrained then copies the modeling code and writes `auto_map`, so a saved
# folder loads with trust_remote_code=True where this package is not installed.
Bert4RecConfig.register_for_auto_class()
Bert4RecModel.register_for_auto_class("AutoModel")
Bert4RecForMaskedItemPrediction.register_for_auto_class("AutoModelForMaskedLM")

__all__ = [
    "Bert4RecConfig",
    "Bert4RecForMaskedItemPrediction",
    "Bert4RecModel",
    "Bert4RecPreTrainedModel",
    "Bert4RecRecommender",
    "Recommendation",
    "extend_vocabulary",
    "recommend",
    "Bert4RecTopK",
    "Bert4RecTrainer",
    "TimeBudgetCallback",
    "Bert4RecTuningTrainer",
    "HyperSpace",
    "HyperSpaceError",
    "TuningResult",
    "parse_hyper_space",
    "read_hyper_space",
    "tune_bert4rec",
    "ConfigError",
    "DataCollatorForMaskedItemPrediction",
    "DataCollatorForNextItemPrediction",
    "ItemTokenizer",
    "MaskedItemPredictionOutput",
    "RankingEvaluator",
    "__version__",
    "build_sequences",
    "count_item_popularity",
    "evaluate_saved_model",
    "export_model",
    "export_onnx",
    "leave_one_out",
    "load_config",
    "load_interactions",
    "load_processed",
    "ranking_metrics",
    "read_interactions",
    "run_bert4rec",
    "save_processed",
]
