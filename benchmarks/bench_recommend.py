"""Recommendation throughput (histories per second) of an ml-100k-sized model on CPU.

    python benchmarks/bench_recommend.py                         # default config, ml-100k catalog, k=10
    python benchmarks/bench_recommend.py --model-dir outputs/ml-100k --threads 1 2

The histories are the 943 ml-100k test users (raw ids, the whole history: up to 736
items, the model reads the last max_seq_length - 1). Without --model-dir the model has
RecBole's default BERT4Rec shape (hidden 64, 2 layers, max_seq_length 50) over the
ml-100k catalog (1682 items); throughput does not depend on the weights. Each case
times ``Bert4RecRecommender.recommend`` end to end (raw ids in, raw ids and scores out:
encoding, batching, forward pass, exclusion of the whole history, top-k, decoding):
batch 1 = one call per history, batch 256 = one call for all users in chunks of 256.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction
from bert4rec_hf.data import build_sequences, leave_one_out, load_interactions
from bert4rec_hf.recommendation import Bert4RecRecommender


def build_recommender(model_dir: str | None) -> tuple[Bert4RecRecommender, list[list]]:
    sequences = build_sequences(load_interactions("ml-100k"))
    if model_dir:
        recommender = Bert4RecRecommender.from_pretrained(model_dir, device="cpu")
        processed = leave_one_out(sequences, tokenizer=recommender.tokenizer, max_seq_length=50)
    else:
        processed = leave_one_out(sequences, max_seq_length=50, fit_on="all")
        torch.manual_seed(0)
        model = Bert4RecForMaskedItemPrediction(Bert4RecConfig(vocab_size=len(processed.tokenizer))).eval()
        recommender = Bert4RecRecommender(model, processed.tokenizer)
    histories = processed.tokenizer.decode(processed.splits["test"]["input_ids"])
    return recommender, histories


def throughput(recommender: Bert4RecRecommender, histories: list[list], batch_size: int, k: int, budget_s: float):
    """Histories per second, repeating the workload until ``budget_s`` has passed."""
    recommender.recommend(histories[:batch_size], k=k, batch_size=batch_size)  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        if batch_size == 1:
            for history in histories[:200]:
                recommender.recommend(history, k=k)
            done += 200
        else:
            recommender.recommend(histories, k=k, batch_size=batch_size)
            done += len(histories)
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="a saved ml-100k model folder (default: a fresh default-config model)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case")
    args = parser.parse_args()

    recommender, histories = build_recommender(args.model_dir)
    config = recommender.model.config
    print(
        f"model: {recommender.num_items} items, hidden {config.hidden_size}, {config.n_layers} layers, "
        f"max_seq_length {config.max_seq_length}; {len(histories)} histories; k={args.k}; torch {torch.__version__}"
    )
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch_size in args.batch_sizes:
            rate = throughput(recommender, histories, batch_size, args.k, args.seconds)
            rows.append({"threads": threads, "batch_size": batch_size, "histories_per_s": round(rate, 1)})
            print(f"threads {threads}  batch {batch_size:>4}: {rate:9.1f} histories/s")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
