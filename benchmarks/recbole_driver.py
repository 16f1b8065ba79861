"""RecBole's side of ``compare_recbole.py``; runs in RecBole's own venv.

Drives RecBole 1.2.1 through its public API (``Config``, ``create_dataset``,
``data_preparation``, ``get_model``, ``get_trainer`` and the trainer's
``fit``/``evaluate``), the way ``run_recbole`` does, and prints one JSON object
per line, prefixed with ``BENCH_JSON``, for the parent to read. The only
additions are measurements: a trainer subclass that times ``_train_epoch`` and
``_valid_epoch`` and counts the masked items its loss is computed on (the
``MASK_INDEX > 0`` positions that RecBole's BERT4Rec weighs), an optional cap
on batches per epoch, a time budget checked through ``fit``'s
``callback_fn``, and, after the test, RecBole's best model ranked again from
its own ``full_sort_predict`` scores with bert4rec-hf's rank rule (ties count
against the target), once with history items kept as candidates (as RecBole's
evaluation) and once with each user's whole history excluded (the target
stays), for the like-for-like pairs. Never imports bert4rec_hf.

    python recbole_driver.py SPEC.json      # spec written by compare_recbole.py
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import resource
import sys
import time

PREFIX = "BENCH_JSON "


def emit(event: str, **fields) -> None:
    print(PREFIX + json.dumps({"event": event, **fields}), flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class BudgetReached(Exception):
    """Raised from ``fit``'s callback once the time budget is spent; the best model is already saved."""


class CappedLoader:
    """The first ``limit`` batches of a RecBole DataLoader (for short, capped epochs)."""

    def __init__(self, loader, limit: int):
        self.loader, self.limit = loader, limit

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.limit)

    def __len__(self) -> int:
        return min(self.limit, len(self.loader))

    def __getattr__(self, name):
        return getattr(self.loader, name)


def timed_trainer_class(base):
    class TimedTrainer(base):
        """RecBole's trainer, with each epoch, batch and evaluation timed."""

        def __init__(self, config, model, max_batches=None):
            super().__init__(config, model)
            self.max_batches = max_batches
            self.t0 = time.perf_counter()
            self.batch_entries: list[float] = []  # time each batch reaches the loss (data loading done)
            self.batch_masked: list[int] = []
            self.batch_rows: list[int] = []
            self.epoch_end: float | None = None
            self.valid_seconds: list[float] = []

        def _counting_loss(self, interaction):
            self.batch_entries.append(time.perf_counter())
            self.batch_masked.append(int((interaction[self.model.MASK_INDEX] > 0).sum()))
            self.batch_rows.append(len(interaction))
            return self.model.calculate_loss(interaction)

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            first = len(self.batch_entries)
            loader = CappedLoader(train_data, self.max_batches) if self.max_batches else train_data
            start = time.perf_counter()
            loss = super()._train_epoch(loader, epoch_idx, loss_func=self._counting_loss, show_progress=show_progress)
            self.epoch_end = time.perf_counter()
            emit(
                "epoch",
                epoch=epoch_idx + 1,
                seconds=self.epoch_end - start,
                batches=len(self.batch_entries) - first,
                rows=sum(self.batch_rows[first:]),
                masked_items=sum(self.batch_masked[first:]),
                loss=float(loss) if loss is not None else None,
                wall=self.epoch_end - self.t0,
            )
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            start = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
            end = time.perf_counter()
            self.valid_seconds.append(end - start)
            emit(
                "valid",
                epoch=len(self.valid_seconds),
                seconds=end - start,
                wall=end - self.t0,
                metrics={key: float(value) for key, value in result.items()},
            )
            return score, result

        def steady_state(self) -> dict:
            """Batches 2..N-1, entry to entry: each interval is one full cycle
            (forward, backward, optimizer step, loading and masking the next batch)."""
            entries = self.batch_entries
            if len(entries) < 3:
                return {}
            return {
                "batches": len(entries) - 2,
                "seconds": entries[-1] - entries[1],
                "rows": sum(self.batch_rows[1:-1]),
                "masked_items": sum(self.batch_masked[1:-1]),
            }

    return TimedTrainer


# ----------------------------------------------------------------------------- history-excluded ranking
def metrics_from_ranks(ranks, ks) -> dict:
    """Hit@K, NDCG@K and MRR@K (RecBole's names) from 0-based ranks (a torch tensor)."""
    import torch

    ranks = ranks.to(torch.float64)
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"hit@{k}"] = float(hit.double().mean())
        out[f"ndcg@{k}"] = float(torch.where(hit, 1.0 / torch.log2(ranks + 2.0), 0.0).mean())
        out[f"mrr@{k}"] = float(torch.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return out


def candidate_ranks(scores, targets, excluded=None):
    """Rank of each row's target: the number of candidates other than the target scoring
    >= it (ties count against the target). Candidates: every real item (column 0 is
    RecBole's padding), minus ``excluded`` (a (B, n_items) bool mask); the target always stays."""
    import torch

    rows = torch.arange(scores.shape[0])
    candidates = torch.ones_like(scores, dtype=torch.bool) if excluded is None else ~excluded
    candidates[:, 0] = False
    candidates[rows, targets] = True
    target_scores = scores[rows, targets].unsqueeze(1)
    return ((scores >= target_scores) & candidates).sum(dim=1) - 1


def history_mask(dataset, num_users: int, num_items: int):
    """(users, items) bool: the items each user had in ``dataset`` (RecBole's augmented
    sequential rows: every target and every item of every input list)."""
    import torch

    feat = dataset.inter_feat
    uid, iid = feat[dataset.uid_field].long(), feat[dataset.iid_field].long()
    lists = feat[dataset.item_id_list_field].long()
    mask = torch.zeros(num_users, num_items, dtype=torch.bool)
    mask[uid, iid] = True
    real = lists > 0
    mask[uid.unsqueeze(1).expand_as(lists)[real], lists[real]] = True
    return mask


def history_ranked_metrics(model, valid_data, test_data, train_dataset, ks) -> dict:
    """Validation and test metrics of ``model`` from its own ``full_sort_predict``
    scores, ranked by bert4rec-hf's rule (ties against the target), twice: history
    items kept as candidates (as RecBole's evaluation; a cross-check of its figures,
    equal unless scores tie) and each user's whole history excluded: every item the
    user interacted with before the target (the validation target's history is the
    training part, the test target's adds the validation item); the target stays.
    Vectorised: one (batch, items) mask per batch, no per-item loop."""
    import torch

    valid_set = valid_data._dataset
    num_users, num_items = valid_set.user_num, valid_set.item_num
    before_valid = history_mask(train_dataset, num_users, num_items)
    before_test = before_valid.clone()
    valid_feat = valid_set.inter_feat
    before_test[valid_feat[valid_set.uid_field].long(), valid_feat[valid_set.iid_field].long()] = True
    out: dict = {}
    model.eval()
    for split, loader, history in (("valid", valid_data, before_valid), ("test", test_data, before_test)):
        kept, excluded, window_outside = [], [], 0
        with torch.no_grad():
            for interaction, _, _, _ in loader:
                scores = model.full_sort_predict(interaction).view(len(interaction), -1).double()
                users = interaction[valid_set.uid_field].long()
                targets = interaction[valid_set.iid_field].long()
                masks = history[users]
                window = interaction[valid_set.item_id_list_field].long()
                window_outside += int((~masks.gather(1, window) & (window > 0)).sum())  # must stay 0
                kept.append(candidate_ranks(scores, targets))
                excluded.append(candidate_ranks(scores, targets, masks))
        kept, excluded = torch.cat(kept), torch.cat(excluded)
        name = "metrics" if split == "test" else "best_valid"
        out[f"{name}_ties_counted"] = metrics_from_ranks(kept, ks)
        out[f"{name}_exclude_history"] = metrics_from_ranks(excluded, ks)
        out[f"{split}_ranking_check"] = {
            "users": len(kept),
            "ranks_changed_by_exclusion": int((kept != excluded).sum()),
            "input_items_outside_history": window_outside,
        }
    return out


def main() -> int:
    # RecBole 1.2.1 reloads its own best checkpoint with a bare torch.load, which
    # torch >= 2.6 makes weights-only and which then rejects RecBole's pickled
    # state; the file is the one this very run wrote, so the old default is safe.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    emit(
        "env",
        recbole=recbole.__version__,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        python=platform.python_version(),
    )
    config = Config(model="BERT4Rec", dataset=spec["dataset"], config_dict=spec["config"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    start = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    emit(
        "data",
        seconds=time.perf_counter() - start,
        data_path=config["data_path"],
        interactions=int(dataset.inter_num),
        users=int(dataset.user_num) - 1,  # RecBole counts the padding id
        items=int(dataset.item_num) - 1,
        train_rows=len(train_data.dataset),
        train_batches=len(train_data),
        eval_users=len(valid_data.dataset),
        mask_item_length=int(config["mask_ratio"] * config["MAX_ITEM_LIST_LENGTH"]),
    )

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    keys = (
        "hidden_size",
        "n_layers",
        "n_heads",
        "inner_size",
        "hidden_dropout_prob",
        "attn_dropout_prob",
        "mask_ratio",
        "ft_ratio",
        "learning_rate",
        "weight_decay",
        "train_batch_size",
        "eval_batch_size",
        "MAX_ITEM_LIST_LENGTH",
    )
    emit(
        "model",
        parameters=sum(p.numel() for p in model.parameters()),
        settings={key: config.final_config_dict.get(key) for key in keys},
    )
    trainer = timed_trainer_class(get_trainer(config["MODEL_TYPE"], config["model"]))(
        config, model, max_batches=spec.get("max_batches")
    )

    if spec["mode"] == "throughput":
        # A fixed number of training batches, then one full-ranking evaluation of all users.
        trainer.t0 = time.perf_counter()
        trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
        emit("throughput", **trainer.steady_state(), batches_per_epoch=len(train_data))
        start = time.perf_counter()
        result = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
        emit(
            "eval_timing",
            seconds=time.perf_counter() - start,
            users=len(valid_data.dataset),
            metrics={key: float(value) for key, value in result.items()},
        )
    else:
        budget = spec.get("time_budget")

        def stop_when_spent(epoch_idx, valid_score):
            if budget is not None and time.perf_counter() - trainer.t0 > budget:
                raise BudgetReached

        trainer.t0 = time.perf_counter()
        try:
            trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=stop_when_spent)
            stopped = "early stopping" if len(trainer.valid_seconds) < config["epochs"] else "epochs"
        except BudgetReached:
            stopped = "time budget"
        train_seconds = time.perf_counter() - trainer.t0
        emit("train_end", seconds=train_seconds, stopped_by=stopped, throughput=trainer.steady_state())
        start = time.perf_counter()
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        seconds = time.perf_counter() - start
        # RecBole's own (best) model again, from its own scores: history kept, and history excluded
        ks = [int(k) for k in config["topk"]]
        start = time.perf_counter()
        ours_rule = history_ranked_metrics(model, valid_data, test_data, train_data._dataset, ks)
        emit(
            "test",
            seconds=seconds,
            metrics={key: float(value) for key, value in test.items()},
            best_valid={key: float(value) for key, value in (trainer.best_valid_result or {}).items()},
            **ours_rule,
            driver_ranking_seconds=time.perf_counter() - start,
        )
    emit("done", peak_rss_mib=peak_rss_mib())
    return 0


if __name__ == "__main__":
    sys.exit(main())
