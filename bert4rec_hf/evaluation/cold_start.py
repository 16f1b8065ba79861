"""The cold-start protocol: how well a model recommends items nobody interacted with at training time.

A seeded share of the log's items is held out (``hold_out_items``). The
vocabulary the model trains with lacks them, so their interactions leave the
training windows and every history, and users whose validation target is one
are not validated. After training they are added the way a served catalog
grows (``finetuning.extend_vocabulary``, with their features when the model
has item features: an id-only model can only give them fresh embeddings), the
test split is encoded again with the grown vocabulary, and the test metrics
are reported for every user, for those whose target is a cold item
(``test_cold``) and for the others (``test_warm``; ``target_groups``).
The figures compare with ``evaluation.baselines.MostPopular``, which never
ranks a cold item above a trained one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def hold_out_items(items: Any, share: float, seed: int) -> pa.Array:
    """``round(share x distinct items)`` of the distinct ``items``, drawn with ``seed``
    (the same log and seed hold out the same items), in first-seen order."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the share of cold items must be in [0, 1), got {share!r}")
    distinct = pc.unique(pa.chunked_array([items]) if isinstance(items, pa.Array) else items)
    distinct = distinct.combine_chunks() if isinstance(distinct, pa.ChunkedArray) else distinct
    count = round(share * len(distinct))
    chosen = np.sort(np.random.default_rng(seed).choice(len(distinct), size=count, replace=False))
    return distinct.take(pa.array(chosen, pa.int64()))


def target_groups(labels: Any, first_cold_id: int) -> dict[str, np.ndarray]:
    """Row indices of evaluation rows whose target is a cold item (vocabulary ids from
    ``first_cold_id``, where the grown vocabulary put them) and of the others."""
    labels = np.asarray(labels, dtype=np.int64)
    cold = labels >= first_cold_id
    return {"cold": np.flatnonzero(cold), "warm": np.flatnonzero(~cold)}


__all__ = ["hold_out_items", "target_groups"]
