"""SASRec+ on our leave-one-out split: the published figure issue 24 measures BERT4Rec against.

Klenitskiy & Vasilev (RecSys 2023) report NDCG@10 0.0327 on the BERT4Rec repository's Beauty file
(``../shared/data/beauty/beauty.txt``) for SASRec trained with the full cross-entropy ("SASRec+"),
against 0.0187 for BERT4Rec. This script trains that model (Kang & McAuley's SASRec: causal
self-attention, every position predicting the next item, item embeddings scaled by sqrt(d) plus
learned positions, pre-attention LayerNorm, scores against the tied item embeddings, no item bias)
with their settings (hidden 64, 2 blocks, 1 head, dropout 0.1, the last 50 items, batch 128 users,
Adam at 1e-3, early stopping on validation with patience 10 epochs) on the same split the package
uses, and ranks the test item the package's way (the whole catalog; history kept, and removed),
so the gap between the two models is read like for like.

    # held out (their protocol): train through item n-2, validate on n-1 every epoch, test on n
    OMP_NUM_THREADS=1 python benchmarks/sasrec_reference.py --data-path ../shared/data/beauty/beauty.txt \\
        --epochs 30 --output sasrec.json
    # trained through item n-1 (the package's recipes' protocol) for a fixed number of epochs
    ... --trained-through --epochs N

Not part of the package: a reference to measure against, written from the papers.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import torch
from torch import nn
from torch.nn import functional as F

from bert4rec_hf.configuration_bert4rec import NUM_SPECIAL_TOKENS, PAD_TOKEN_ID
from bert4rec_hf.evaluation import RankingEvaluator
from bert4rec_hf.evaluation.metrics import ranking_metrics
from bert4rec_hf.scoring_bert4rec import ItemScorer

PAD = PAD_TOKEN_ID
KS = (5, 10, 20)


def read_sequences(path: Path) -> tuple[list[np.ndarray], int]:
    """Each user's items in file order and the number of items V, in the package's vocabulary
    layout (padding 0, [MASK] 1, unused here; items from ``NUM_SPECIAL_TOKENS``), so the
    package's evaluator ranks them."""
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["user", "item"]),
        parse_options=pacsv.ParseOptions(delimiter=" "),
        convert_options=pacsv.ConvertOptions(column_types={"user": pa.int64(), "item": pa.int64()}),
    )
    users = table["user"].to_numpy()
    _, items = np.unique(table["item"].to_numpy(), return_inverse=True)
    order = np.argsort(users, kind="stable")  # file order within a user
    users, items = users[order], items[order] + NUM_SPECIAL_TOKENS
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    return np.split(items, starts[1:]), int(items.max()) - NUM_SPECIAL_TOKENS + 1


def padded(sequences: list[np.ndarray], width: int) -> np.ndarray:
    """The last ``width`` items of each sequence, left-aligned and right-padded."""
    lengths = np.array([min(len(s), width) for s in sequences])
    out = np.zeros((len(sequences), width), dtype=np.int64)
    columns = np.arange(width)
    flat = np.concatenate([s[len(s) - n :] for s, n in zip(sequences, lengths, strict=True)])
    out[columns[None, :] < lengths[:, None]] = flat
    return out


class SASRec(nn.Module):
    def __init__(self, num_items: int, hidden: int, blocks: int, heads: int, dropout: float, max_length: int):
        super().__init__()
        self.config = SimpleNamespace(vocab_size=num_items + NUM_SPECIAL_TOKENS)  # what the evaluator reads
        self.item_embeddings = nn.Embedding(self.config.vocab_size, hidden, padding_idx=PAD)
        self.position_embeddings = nn.Embedding(max_length, hidden)
        self.dropout = nn.Dropout(dropout)
        self.attention_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.attentions = nn.ModuleList(
            nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True) for _ in range(blocks)
        )
        self.feed_forward_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.feed_forwards = nn.ModuleList(
            nn.Sequential(
                nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.ReLU(), nn.Linear(hidden, hidden), nn.Dropout(dropout)
            )
            for _ in range(blocks)
        )
        self.last_norm = nn.LayerNorm(hidden, eps=1e-8)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_embeddings.weight[PAD].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states of right-padded rows; position t has read items 0..t only."""
        length = input_ids.shape[1]
        real = input_ids.ne(PAD).unsqueeze(-1)
        x = self.item_embeddings(input_ids) * math.sqrt(self.item_embeddings.embedding_dim)
        x = self.dropout(x + self.position_embeddings.weight[:length]) * real
        future = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).triu(1)
        for attention_norm, attention, feed_forward_norm, feed_forward in zip(
            self.attention_norms, self.attentions, self.feed_forward_norms, self.feed_forwards, strict=True
        ):
            query = attention_norm(x)
            x = query + attention(query, x, x, attn_mask=future, need_weights=False)[0]
            x = feed_forward_norm(x)
            x = (x + feed_forward(x)) * real
        return self.last_norm(x)

    def scores(self, states: torch.Tensor) -> torch.Tensor:
        """Every real item's score (columns from ``NUM_SPECIAL_TOKENS``): the training loss's."""
        return states @ self.item_embeddings.weight[NUM_SPECIAL_TOKENS:].T

    def item_scorer(self, states: torch.Tensor, input_ids: torch.Tensor | None = None) -> ItemScorer:
        """The package's scorer of these states: tied embeddings, no item bias."""
        weight = self.item_embeddings.weight
        return ItemScorer(states, weight, torch.zeros(len(weight), dtype=weight.dtype))


def train_epoch(model: SASRec, optimizer: torch.optim.Optimizer, rows: np.ndarray, batch_size: int, rng) -> float:
    """One pass over the users' training rows (the last max_length + 1 items each), in random order."""
    model.train()
    losses = []
    order = rng.permutation(len(rows))
    for start in range(0, len(rows), batch_size):
        chunk = rows[order[start : start + batch_size]]
        width = int((chunk != PAD).sum(1).max())
        chunk = torch.from_numpy(chunk[:, :width])
        inputs, labels = chunk[:, :-1], chunk[:, 1:]
        targets = labels.ne(PAD)
        states = model(inputs)[targets]
        loss = F.cross_entropy(model.scores(states), labels[targets] - NUM_SPECIAL_TOKENS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def rank_targets(model: SASRec, histories: list[np.ndarray], targets: np.ndarray, max_length: int) -> dict:
    """Each target's metrics against the whole catalog from its history's last max_length items,
    ranked by the package's ``RankingEvaluator`` (ties with the target count against it): history
    items kept as candidates, and removed (the target itself is never removed)."""
    model.eval()
    evaluators = {"full": RankingEvaluator("full", KS), "full_excluded": RankingEvaluator("full", KS, exclude_history=True)}
    ranks = {name: [] for name in evaluators}
    longest = max(len(h) for h in histories)
    for start in range(0, len(histories), 2048):
        part = histories[start : start + 2048]
        inputs = torch.from_numpy(padded(part, max_length))
        states = model(inputs)[torch.arange(len(part)), inputs.ne(PAD).sum(1) - 1]
        target = torch.from_numpy(targets[start : start + 2048])
        seen = torch.from_numpy(padded(part, longest))
        for name, evaluator in evaluators.items():
            ranks[name].append(evaluator.rank_hidden_states(model, states, inputs, target, history=seen))
    return {name: ranking_metrics(torch.cat(parts), KS) for name, parts in ranks.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", type=Path, required=True, help="a `user item` lines file, in time order")
    parser.add_argument("--epochs", type=int, default=100, help="at most this many passes over the users")
    parser.add_argument("--patience", type=int, default=10, help="epochs without a better validation NDCG@10")
    parser.add_argument("--time-budget", type=float, help="seconds: no epoch starts that would end past it")
    parser.add_argument("--trained-through", action="store_true", help="train through item n-1, no validation")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--valid-users", type=int, default=10000, help="validate on this many users (theirs: 10,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, help="write the settings, the curve and the test figures here")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    sequences, num_items = read_sequences(args.data_path)
    sequences = [s for s in sequences if len(s) >= 3]
    cut = 1 if args.trained_through else 2
    rows = padded([s[:-cut] for s in sequences], args.max_length + 1)
    rows = rows[(rows != PAD).sum(1) >= 2]
    model = SASRec(num_items, args.hidden_size, args.blocks, args.heads, args.dropout, args.max_length)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    print(f"{len(sequences)} users, {num_items} items, {len(rows)} training rows", flush=True)

    sample = np.sort(rng.permutation(len(sequences))[: args.valid_users]) if args.valid_users else np.arange(len(sequences))
    checked = [sequences[i] for i in sample]
    curve, best, best_state, waited = [], -1.0, None, 0
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(model, optimizer, rows, args.batch_size, rng)
        point = {"epoch": epoch, "loss": round(loss, 4), "seconds": round(time.perf_counter() - started, 1)}
        if not args.trained_through:
            valid = rank_targets(model, [s[:-2] for s in checked], np.array([s[-2] for s in checked]), args.max_length)
            point["valid_ndcg@10"] = round(valid["full"]["ndcg@10"], 4)
            point["valid_hit@10"] = round(valid["full"]["hit@10"], 4)
            if point["valid_ndcg@10"] > best:
                best, best_state, waited = point["valid_ndcg@10"], copy.deepcopy(model.state_dict()), 0
            else:
                waited += 1
        curve.append(point)
        print(json.dumps(point), flush=True)
        elapsed = time.perf_counter() - started
        if waited >= args.patience or (args.time_budget and elapsed * (epoch + 1) / epoch > args.time_budget):
            break
    training_seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    test = rank_targets(model, [s[:-1] for s in sequences], np.array([s[-1] for s in sequences]), args.max_length)
    result = {
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "users": len(sequences),
        "items": num_items,
        "training_seconds": round(training_seconds, 1),
        "curve": curve,
        "test": {name: {k: round(v, 4) for k, v in metrics.items() if k.startswith(("ndcg", "hit"))} for name, metrics in test.items()},
    }
    print(json.dumps(result["test"]), flush=True)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
