"""The Cloze losses of BERT4Rec, each over the scores of one :class:`ItemScorer`.

``CE`` is the paper's full softmax over the real items (chunked over the
catalog with ``config.item_chunk_size``: same loss and gradients, no ``M x
catalog`` logits; with ``config.label_smoothing`` ε, training adds ``ε * (target score -
mean score)``, which is the label-smoothed cross-entropy exactly, with no second pass over
the catalog; with teachers' soft targets and ``config.distillation_weight`` α, ``α * (target
score - the teachers' expected score)``: the cross-entropy against the mix of the target and
the teachers' softmax, exactly); ``BPR`` is pairwise, against sampled negatives or every
other item; ``SSM`` is a sampled softmax with logQ correction for catalogs
where even the chunked softmax is too slow. Imported by ``modeling_bert4rec``
(relatively, so remote code carries it).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .configuration_bert4rec import NUM_SPECIAL_TOKENS, Bert4RecConfig
from .scoring_bert4rec import ItemScorer, LogSumExp, contains, window_columns


def check_item_ids(ids: torch.Tensor, vocab_size: int) -> None:
    """Labels and negatives must be real items: padding or [MASK] as a target would train nonsense."""
    bad = (ids < NUM_SPECIAL_TOKENS) | (ids >= vocab_size)
    if ids.numel() and bad.any():
        raise ValueError(
            f"labels/negatives must be real item ids in [{NUM_SPECIAL_TOKENS}, {vocab_size}); "
            f"got {ids[bad][:5].tolist()} (padding, [MASK] or out of vocabulary)"
        )


def cloze_loss(
    scorer: ItemScorer,
    targets: torch.Tensor,
    config: Bert4RecConfig,
    training: bool,
    negative_ids: torch.Tensor | None = None,
    sampling_weights: torch.Tensor | None = None,
    chunk_size: int | None = None,
    teacher_probabilities: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-target loss of ``config.loss_type`` and the ``(M, vocab_size)`` logits
    when the loss built them anyway (unchunked CE, full BPR), else ``None``.
    ``SSM`` reports the exact CE (the quantity it estimates) outside training.
    ``chunk_size``: items per chunk of the CE loss (default ``config.item_chunk_size``; 0: none).
    ``teacher_probabilities``: ``(M, num_items)`` soft targets over the real items, mixed into
    the CE targets with ``config.distillation_weight`` while training.
    Every loss reads the scores divided by ``config.softmax_temperature``; the returned
    logits are the model's own scores, undivided."""
    chunk_size = config.item_chunk_size if chunk_size is None else chunk_size
    check_item_ids(targets, config.vocab_size)
    loss_type = "CE" if config.loss_type == "SSM" and not training else config.loss_type
    scaled = scorer.divided(config.softmax_temperature)
    if loss_type == "SSM":
        return sampled_softmax(scaled, targets, config, sampling_weights), None
    if loss_type == "BPR" and negative_ids is not None:
        check_item_ids(negative_ids.reshape(-1), config.vocab_size)
        return sampled_bpr(scaled, targets, negative_ids), None
    if loss_type == "CE" and chunk_size > 0:
        loss, logits = chunked_cross_entropy(scaled, targets, chunk_size), None
    else:
        logits = scorer.all()
        scores = logits / config.softmax_temperature if config.softmax_temperature != 1 else logits
        if loss_type == "BPR":
            return full_bpr(scores, targets), logits
        loss = F.cross_entropy(scores.float(), targets, reduction="none")
    if training and config.label_smoothing:
        loss = loss + config.label_smoothing * (scaled.targets(targets).float() - scaled.mean().float())
    if training and teacher_probabilities is not None:
        if not config.distillation_weight or loss_type != "CE":
            raise ValueError(
                "teachers' soft targets need loss_type 'CE' and a distillation_weight above 0, got "
                f"loss_type {config.loss_type!r}, distillation_weight {config.distillation_weight!r}"
            )
        expected = scaled.expected(teacher_probabilities).float()
        loss = loss + config.distillation_weight * (scaled.targets(targets).float() - expected)
    return loss, logits


def full_bpr(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BPR of each target against every other real item, averaged over them."""
    real = logits[:, NUM_SPECIAL_TOKENS:].float()
    positive = logits.gather(1, targets[:, None]).float()
    pairwise = -F.logsigmoid(positive - real).scatter(1, targets[:, None] - NUM_SPECIAL_TOKENS, 0.0)
    return pairwise.sum(1) / max(real.shape[1] - 1, 1)


def sampled_bpr(scorer: ItemScorer, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """BPR of each target against its own ``(M, k)`` negatives."""
    scores = scorer.chosen(torch.cat([targets[:, None], negatives], dim=1))
    return -F.logsigmoid(scores[:, :1] - scores[:, 1:]).mean(1)


def sampled_softmax(
    scorer: ItemScorer, targets: torch.Tensor, config: Bert4RecConfig, sampling_weights: torch.Tensor | None
) -> torch.Tensor:
    """Sampled softmax with logQ correction: the positive against
    ``num_sampled_negatives`` items drawn with replacement from the proposal q
    and shared by every row; each negative's logit is lowered by
    ``log(num_sampled * q(item))`` and negatives equal to the row's target
    (accidental hits) are masked, so as the sample grows the loss tends to the
    full-softmax cross-entropy."""
    num_sampled, device = config.num_sampled_negatives, targets.device
    if config.sampling_distribution == "popularity":
        if sampling_weights is None:
            raise ValueError(
                'sampling_distribution="popularity" needs item weights: call '
                "model.set_sampling_weights(count_item_popularity(train_input_ids, vocab_size))"
            )
        proposal = sampling_weights[NUM_SPECIAL_TOKENS:].to(device, torch.float32)
        proposal = proposal / proposal.sum()
        negatives = torch.multinomial(proposal, num_sampled, replacement=True)
        log_expected = torch.log(proposal[negatives] * num_sampled)
        negatives = negatives + NUM_SPECIAL_TOKENS
    else:
        negatives = torch.randint(NUM_SPECIAL_TOKENS, config.vocab_size, (num_sampled,), device=device)
        log_expected = torch.full((num_sampled,), num_sampled / config.num_items, device=device).log()
    positive = scorer.targets(targets)
    negative = scorer.chosen(negatives) - log_expected.to(positive.dtype)
    negative = negative.masked_fill_(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([positive[:, None], negative], dim=1).float()
    return torch.logsumexp(logits, 1) - logits[:, 0]


def chunked_cross_entropy(scorer: ItemScorer, targets: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """The full-softmax cross-entropy of each target, scanning the catalog
    ``chunk_size`` items at a time (see :class:`ChunkedSoftmaxCrossEntropy`)."""
    return ChunkedSoftmaxCrossEntropy.apply(
        scorer.states, scorer.weight, scorer.bias, targets, chunk_size, scorer.seen, scorer.offset
    )


class ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy over the real items without the ``rows x catalog`` logits.

    Forward keeps a running log-sum-exp over item chunks; backward recomputes
    each chunk's scores and accumulates the gradients of the states, the item
    embeddings, the bias and the seen-item offset, so peak memory is ``rows x
    chunk_size`` (plus the dense weight gradient) while the loss and gradients
    are those of the full softmax. Arithmetic is float32 (float64 for float64
    inputs) whatever the autocast state.
    """

    @staticmethod
    def forward(ctx, states, weight, bias, targets, chunk_size: int, seen=None, offset=None):
        scorer = ItemScorer(states, weight, bias, seen, offset, exact=False)
        normalizer = LogSumExp(states.shape[0], states.device, scorer.dtype)
        for _, scores in scorer.chunks(chunk_size):
            normalizer.add(scores)
        ctx.save_for_backward(states, weight, bias, targets, normalizer.value, seen, offset)
        ctx.chunk_size = chunk_size
        return normalizer.value - scorer.targets(targets)

    @staticmethod
    def backward(ctx, grad_output):
        states, weight, bias, targets, lse, seen, offset = ctx.saved_tensors
        need_states, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_offset = offset is not None and ctx.needs_input_grad[6]
        scorer = ItemScorer(states, weight, bias, seen, offset, exact=False)
        dtype = scorer.dtype
        h, g = states.to(dtype), grad_output.to(dtype)
        grad_states = torch.zeros_like(h) if need_states else None
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=h.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=dtype, device=h.device) if need_bias else None
        grad_offset = torch.zeros((), dtype=dtype, device=h.device) if need_offset else None
        for start, probs in scorer.chunks(ctx.chunk_size):
            stop = start + probs.shape[1]
            # d loss / d scores = g * softmax, computed in place on the recomputed scores
            probs.sub_(lse[:, None]).exp_().mul_(g[:, None])
            if need_states:
                grad_states.addmm_(probs, weight[start:stop].to(dtype))
            if need_weight:
                grad_weight[start:stop] = probs.t() @ h
            if need_bias:
                grad_bias[start:stop] = probs.sum(0)
            if need_offset:
                columns, inside = window_columns(seen, start, probs.shape[1])
                grad_offset += probs.gather(1, columns).mul_(inside).sum()
        # minus g at each target column
        if need_states:
            grad_states.sub_(g[:, None] * weight[targets].to(dtype))
        if need_weight:
            grad_weight.index_add_(0, targets, -g[:, None] * h)
        if need_bias:
            grad_bias.index_add_(0, targets, -g)
        if need_offset:
            grad_offset -= (g * contains(seen, targets[:, None])[:, 0]).sum()
        return (
            grad_states.to(states.dtype) if need_states else None,
            grad_weight.to(weight.dtype) if need_weight else None,
            grad_bias.to(bias.dtype) if need_bias else None,
            None,
            None,
            None,
            grad_offset.reshape(offset.shape).to(offset.dtype) if need_offset else None,
        )


def view_contrastive_loss(
    states: torch.Tensor, attention_mask: torch.Tensor, num_views: int, temperature: float
) -> torch.Tensor:
    """CBiT's multi-pair contrastive loss (Du et al., CIKM 2022) over ``num_views`` masked
    copies of each window, stacked copy by copy (the collator's ``num_views``).

    A copy is represented by its encoder outputs at the window's real positions, flattened
    (padding zeroed, so the copies of a window compare position by position). For every
    ordered pair of copies ``(j, k)``, each window of copy ``j`` must find its own copy ``k``
    among every window of copy ``k`` and the other windows of copy ``j`` (NT-Xent over cosine
    similarities divided by ``temperature``); the loss is the mean over windows and pairs.
    """
    rows = states.shape[0] // num_views
    if num_views < 2 or rows * num_views != states.shape[0]:
        raise ValueError(f"the contrastive loss needs num_views >= 2 copies of equal size, got {num_views} for {states.shape[0]} rows")
    flat = (states.float() * attention_mask.unsqueeze(-1).to(torch.float32)).flatten(1)
    views = F.normalize(flat, dim=1).view(num_views, rows, -1)
    similarity = torch.einsum("vrd,wsd->vwrs", views, views) / temperature  # (view, view, row, row)
    anchor, other = (~torch.eye(num_views, dtype=torch.bool, device=states.device)).nonzero(as_tuple=True)
    own_view = similarity[anchor, anchor].masked_fill(torch.eye(rows, dtype=torch.bool, device=states.device), float("-inf"))
    logits = torch.cat([similarity[anchor, other], own_view], dim=-1)  # (pairs, row, 2 * rows): the positive at [p, r, r]
    targets = torch.arange(rows, device=states.device).repeat(anchor.shape[0])
    return F.cross_entropy(logits.reshape(-1, 2 * rows), targets)


__all__ = ["ChunkedSoftmaxCrossEntropy", "check_item_ids", "cloze_loss", "view_contrastive_loss"]
