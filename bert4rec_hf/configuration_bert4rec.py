"""BERT4Rec model configuration.

Public names follow RecBole's BERT4Rec (``n_layers``, ``n_heads``, ``inner_size``,
``attn_dropout_prob``, ``max_seq_length``); ``attribute_map`` lets transformers'
BERT blocks read them under their own names.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from transformers import PreTrainedConfig

# The vocabulary's special ids (real items start at NUM_SPECIAL_TOKENS) and the label of unscored positions.
PAD_TOKEN_ID, MASK_TOKEN_ID = 0, 1
NUM_SPECIAL_TOKENS = 2
IGNORE_INDEX = -100

HIDDEN_ACTIVATIONS = ("gelu", "relu", "swish", "tanh", "sigmoid")
LOSS_TYPES = ("CE", "BPR", "SSM")
SAMPLING_DISTRIBUTIONS = ("uniform", "popularity")
ITEM_FEATURE_KINDS = ("token", "token_seq", "float", "float_seq")
ITEM_FEATURE_FUSIONS = ("sum", "concat")
# Fields that record a training setting of the run (set from its masking settings, never read by the model)
# or a fact of its training data (set by the training run, read by the recommender's defaults).
TRAINING_RECORDS = ("mask_ratio", "repeat_share")


class Bert4RecConfig(PreTrainedConfig):
    r"""Configuration of a BERT4Rec model.

    Defaults are those of RecBole's BERT4Rec. ``vocab_size`` counts the real
    items plus the two special tokens (``pad_token_id`` 0 and ``mask_token_id``
    1), so it equals ``len(ItemTokenizer)``.

    Args:
        vocab_size: number of vocabulary entries (items + 2 special tokens).
        hidden_size: width of item embeddings and transformer layers.
        inner_size: width of the feed-forward layer.
        n_layers: number of transformer blocks.
        n_heads: number of attention heads (must divide ``hidden_size``).
        hidden_dropout_prob: dropout on embeddings and sub-layer outputs.
        attn_dropout_prob: dropout on attention probabilities.
        hidden_act: one of gelu, relu, swish, tanh, sigmoid.
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: std of the normal weight initialiser.
        max_seq_length: longest history the model reads (positions).
        mask_ratio: share of items masked by the Cloze training task, recorded with the model
            (RecBole lists it among BERT4Rec's hyper-parameters). The model never reads it: training
            takes it from the run's masking settings (``bert4rec_hf.data.MaskingArguments``, a
            training setting of the run configuration), which record it here.
        loss_type: ``"CE"`` (full softmax over items), ``"BPR"`` (pairwise, needs negatives) or
            ``"SSM"`` (sampled softmax: the positive against ``num_sampled_negatives`` items shared by
            the batch, with logQ correction; for catalogs where even a chunked full softmax is too slow).
        num_negatives: negatives per masked item for BPR.
        label_smoothing: with ``loss_type="CE"``, the share of each target's probability mass spread
            evenly over all real items while training (0: the paper's loss). It keeps the softmax
            from pushing the target's score up without bound, a regulariser studied for full-ranking
            quality on large catalogs; evaluation losses stay the plain cross-entropy.
        distillation_weight: with ``loss_type="CE"`` and teachers' soft targets given to the loss (a
            run's ``distill_from`` or ``distill_teachers``), the share of each target's probability mass
            taken from the teachers' softmax instead of the target alone (knowledge distillation,
            Hinton et al., 2015). Independently trained models rank a catalog far better together than
            alone; their soft targets carry that into one model. 0: no teachers, the paper's loss.
        softmax_temperature: the Cloze loss reads every score divided by it (1: the paper's loss).
            Rankings, recommendations and exported scores do not change; training does: a freshly
            initialised model scores every item near 0 (embeddings of std ``initializer_range``), so
            its softmax over a large catalog starts flat, and a temperature below 1 sharpens it from
            the first step. Studied among the levers of full-ranking quality.
        contrastive_weight: with more than one masked copy of each training window in a batch (the
            collator's ``num_views``), the weight of a contrastive loss that pulls the encoder outputs
            of a window's copies together and pushes those of other windows apart (CBiT, Du et al.,
            CIKM 2022: the Cloze and dropout masks make the copies' views). 0: the paper's loss only.
        contrastive_temperature: the contrastive loss reads the cosine similarities divided by it.
        item_chunk_size: score the catalog this many items at a time in the CE loss and in full-ranking
            evaluation, so peak memory is bounded by ``masked positions x item_chunk_size`` instead of
            ``masked positions x catalog``; the loss and its gradients are those of the unchunked softmax.
            0 (default) scores the whole catalog at once.
        num_sampled_negatives: negatives drawn (with replacement) per training batch for ``loss_type="SSM"``.
        sampling_distribution: ``"uniform"`` or ``"popularity"`` (proportional to the weights given to
            ``Bert4RecForMaskedItemPrediction.set_sampling_weights``), the proposal of the SSM negatives.
        seen_item_bias: learn one score offset for the items in the model's own input (the history it
            reads), added wherever items are scored. BERT4Rec's output layer scores the items it reads
            up, as they resemble the next one; on logs where nobody consumes an item twice they never are
            the next one, and the learned offset (negative there, positive where repeats are common)
            says so. Off: the paper's model. Checkpoints saved without the field load with it on and
            the offset at 0, which scores as they did.
        repeat_share: the share of the training log's interactions that repeat an item the user
            already had, recorded by the training run (``None``: not recorded). The model never reads
            it; ``Bert4RecRecommender``'s default ``exclude_history`` follows it (history items stay
            candidates where people come back to items).
        item_features: the item side features fused into every item's embedding (input and output
            side, so an item nobody interacted with is scored from its features), one dict per field:
            ``{"name", "kind": "token" | "token_seq", "vocabulary": [tokens], "length": most tokens per
            item}`` or ``{"name", "kind": "float" | "float_seq", "dim", "mean": [...], "std": [...]}``
            (as ``bert4rec_hf.data.item_features.ItemFeatureField.to_dict`` writes them). None: the
            paper's id-only model, unchanged.
        item_feature_fusion: how an item's feature vector joins its id embedding: ``"sum"`` adds
            them; ``"concat"`` maps ``[id ; features]`` through a learned ``2*hidden -> hidden``
            projection (initialised to the sum, so it starts where ``"sum"`` does and can learn to
            weigh the parts). Only read with ``item_features``.
        tie_word_embeddings: score items against their input embeddings (the paper's model), or
            against an output item matrix of its own (``False``; saved as a weight of its own).
        pad_token_id / mask_token_id: indices of the special tokens (0 and 1).

    Example:

    ```python
    >>> from bert4rec_hf import Bert4RecConfig
    >>> config = Bert4RecConfig(vocab_size=1684)
    >>> config.num_hidden_layers, config.num_items
    (2, 1682)
    ```
    """

    model_type = "bert4rec"
    attribute_map: ClassVar[dict[str, str]] = {
        "num_hidden_layers": "n_layers",
        "num_attention_heads": "n_heads",
        "intermediate_size": "inner_size",
        "attention_probs_dropout_prob": "attn_dropout_prob",
        "max_position_embeddings": "max_seq_length",
    }

    vocab_size: int = 2
    hidden_size: int = 64
    inner_size: int = 256
    n_layers: int = 2
    n_heads: int = 2
    hidden_dropout_prob: float = 0.5
    attn_dropout_prob: float = 0.5
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_seq_length: int = 50
    mask_ratio: float = 0.2
    loss_type: str = "CE"
    num_negatives: int = 1
    label_smoothing: float = 0.0
    distillation_weight: float = 0.0
    softmax_temperature: float = 1.0
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.3
    item_chunk_size: int = 0
    num_sampled_negatives: int = 1024
    sampling_distribution: str = "uniform"
    seen_item_bias: bool = True
    repeat_share: float | None = None
    item_features: list | None = None
    item_feature_fusion: str = "sum"
    pad_token_id: int = PAD_TOKEN_ID
    mask_token_id: int = MASK_TOKEN_ID
    tie_word_embeddings: bool = True
    is_decoder: bool = False
    add_cross_attention: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate()

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """Also validates the overrides of ``from_pretrained(path, **overrides)``:
        transformers sets them after ``__init__``, so ``__post_init__`` never sees them."""
        loaded = super().from_dict(config_dict, **kwargs)
        (loaded[0] if isinstance(loaded, tuple) else loaded).validate()
        return loaded

    @classmethod
    def run_settings(cls) -> tuple[str, ...]:
        """The model settings of a run configuration (``configuration/model/bert4rec.yaml``):
        every field of this class but the vocabulary's, the fixed ones and the records of
        training settings (``TRAINING_RECORDS``)."""
        fixed = {"vocab_size", "item_features", "pad_token_id", "mask_token_id", "is_decoder", "add_cross_attention"}
        fields = Bert4RecConfig.__annotations__.items()
        return tuple(
            name
            for name, kind in fields
            if name not in fixed and name not in TRAINING_RECORDS and not str(kind).startswith("ClassVar")
        )

    @property
    def num_special_tokens(self) -> int:
        return NUM_SPECIAL_TOKENS

    @property
    def num_items(self) -> int:
        """Real items in the vocabulary (special tokens excluded)."""
        return self.vocab_size - self.num_special_tokens

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first invalid field and its allowed range."""
        positive = (
            "hidden_size", "inner_size", "n_layers", "n_heads", "max_seq_length", "num_negatives",
            "num_sampled_negatives",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Bert4RecConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise ValueError(
                f"Bert4RecConfig.vocab_size must be an integer >= 2 (items + [PAD] + [MASK]), got {self.vocab_size!r}"
            )
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"Bert4RecConfig.hidden_size ({self.hidden_size}) must be divisible by n_heads ({self.n_heads})"
            )
        for name in ("hidden_dropout_prob", "attn_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"Bert4RecConfig.{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.mask_ratio, (int, float)) or not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"Bert4RecConfig.mask_ratio must be in (0, 1), got {self.mask_ratio!r}")
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
                raise ValueError(f"Bert4RecConfig.{name} must be a positive number, not inf or nan, got {value!r}")
        if self.hidden_act not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"Bert4RecConfig.hidden_act must be one of {HIDDEN_ACTIVATIONS}, got {self.hidden_act!r}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"Bert4RecConfig.loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        smoothing = self.label_smoothing
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0.0 <= smoothing < 1.0:
            raise ValueError(f"Bert4RecConfig.label_smoothing must be in [0, 1), got {smoothing!r}")
        if smoothing and self.loss_type != "CE":
            raise ValueError(
                f"Bert4RecConfig.label_smoothing ({smoothing}) applies to loss_type 'CE' only, got loss_type {self.loss_type!r}"
            )
        weight = self.distillation_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise ValueError(f"Bert4RecConfig.distillation_weight must be in [0, 1], got {weight!r}")
        if weight and self.loss_type != "CE":
            raise ValueError(
                f"Bert4RecConfig.distillation_weight ({weight}) applies to loss_type 'CE' only, got loss_type {self.loss_type!r}"
            )
        for name in ("softmax_temperature", "contrastive_temperature"):
            temperature = getattr(self, name)
            number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
            if not (number and temperature > 0 and math.isfinite(temperature)):
                raise ValueError(f"Bert4RecConfig.{name} must be a positive number, not inf or nan, got {temperature!r}")
        weight = self.contrastive_weight
        number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if not (number and weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"Bert4RecConfig.contrastive_weight must be a non-negative number, got {weight!r}")
        chunk = self.item_chunk_size
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
            raise ValueError(
                f"Bert4RecConfig.item_chunk_size must be a non-negative integer (0 = no chunking), got {chunk!r}"
            )
        if self.sampling_distribution not in SAMPLING_DISTRIBUTIONS:
            raise ValueError(
                f"Bert4RecConfig.sampling_distribution must be one of {SAMPLING_DISTRIBUTIONS}, "
                f"got {self.sampling_distribution!r}"
            )
        if not isinstance(self.seen_item_bias, bool):
            raise ValueError(f"Bert4RecConfig.seen_item_bias must be True or False, got {self.seen_item_bias!r}")
        share = self.repeat_share
        number = isinstance(share, (int, float)) and not isinstance(share, bool)
        if share is not None and not (number and 0 <= share <= 1):
            raise ValueError(f"Bert4RecConfig.repeat_share must be a share in [0, 1] or None, got {share!r}")
        self.validate_item_features()
        if self.item_feature_fusion not in ITEM_FEATURE_FUSIONS:
            raise ValueError(
                f"Bert4RecConfig.item_feature_fusion must be one of {ITEM_FEATURE_FUSIONS}, got {self.item_feature_fusion!r}"
            )
        if (self.pad_token_id, self.mask_token_id) != (PAD_TOKEN_ID, MASK_TOKEN_ID):
            raise ValueError(
                "Bert4RecConfig.pad_token_id and mask_token_id must be 0 and 1 (real items start at 2), "
                f"got pad_token_id={self.pad_token_id!r}, mask_token_id={self.mask_token_id!r}"
            )
        if self.is_decoder:
            raise ValueError("Bert4RecConfig.is_decoder must be False: BERT4Rec attends in both directions")

    def validate_item_features(self) -> None:
        """Each item feature field is complete and of a known kind (see ``item_features``)."""
        if self.item_features is None:
            return
        if not isinstance(self.item_features, list) or not self.item_features:
            raise ValueError(f"Bert4RecConfig.item_features must be a non-empty list or None, got {self.item_features!r}")
        needs = {"token": ("vocabulary", "length"), "float": ("dim", "mean", "std")}
        for index, spec in enumerate(self.item_features):
            kind = spec.get("kind") if isinstance(spec, dict) else None
            if kind not in ITEM_FEATURE_KINDS or not spec.get("name"):
                raise ValueError(
                    f"Bert4RecConfig.item_features[{index}] needs a name and a kind in {ITEM_FEATURE_KINDS}, got {spec!r}"
                )
            missing = [key for key in needs[kind.removesuffix("_seq")] if key not in spec]
            if missing:
                raise ValueError(f"Bert4RecConfig.item_features[{index}] ({spec['name']!r}, {kind}) lacks {missing}")
            size = spec["length"] if kind.startswith("token") else spec["dim"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"Bert4RecConfig.item_features[{index}] ({spec['name']!r}): length/dim must be >= 1, got {size!r}")


__all__ = ["IGNORE_INDEX", "MASK_TOKEN_ID", "NUM_SPECIAL_TOKENS", "PAD_TOKEN_ID", "Bert4RecConfig"]
