"""Publish a trained BERT4Rec folder on the Hugging Face Hub, checked first.

    python examples/push_to_hub.py outputs/ml-100k user/bert4rec-ml100k            # upload (needs a token)
    python examples/push_to_hub.py outputs/ml-100k user/bert4rec-ml100k --dry-run  # stage and check only

The staged folder is exactly what is uploaded: `Bert4RecRecommender.save_pretrained`
(config.json, model.safetensors, the model code for trust_remote_code, item_vocab.json,
README.md model card) plus the run's reports when present (metrics.json,
run_config.yaml, training_curves.png). Before uploading, a separate Python process in
which `bert4rec_hf` cannot be imported loads the staged folder with
`trust_remote_code=True`, reads item_vocab.json as plain JSON and must return the same
top-10 as the package.

The same upload in one line: `Bert4RecRecommender.from_pretrained(folder).push_to_hub(repo)`.
Other ways that work unchanged:
- `model.push_to_hub(repo)` uploads weights, config and code; upload the vocabulary
  beside it with `huggingface_hub.upload_file(path_or_fileobj=f"{folder}/item_vocab.json",
  path_in_repo="item_vocab.json", repo_id=repo)`.
- `Bert4RecTrainer(..., processing_class=tokenizer, args=TrainingArguments(..., push_to_hub=True,
  hub_model_id=repo))`: every save writes item_vocab.json beside the weights and the Trainer
  pushes the output folder (it also uploads its own model card and training_args.bin).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from bert4rec_hf.recommendation import Bert4RecRecommender

RUN_REPORTS = ("metrics.json", "run_config.yaml", "training_curves.png")

CHECK = """
import json, sys
sys.modules["bert4rec_hf"] = None  # the package is not importable here
import torch
from transformers import AutoModelForMaskedLM

folder, history, k = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
with open(f"{folder}/item_vocab.json", encoding="utf-8") as handle:
    items = json.load(handle)["items"]
index = {item: i + 2 for i, item in enumerate(items)}
ids = torch.tensor([[index[item] for item in history]])
scores = model.next_item_scores(ids)
scores[0, ids[0]] = float("-inf")
print(json.dumps([items[i - 2] for i in scores.topk(k).indices[0].tolist()]))
"""


def stage(recommender: Bert4RecRecommender, source: Path, target: Path) -> list[str]:
    recommender.save_pretrained(target)
    for name in RUN_REPORTS:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    return sorted(path.name for path in target.iterdir() if path.is_file())


def check_without_package(recommender: Bert4RecRecommender, folder: Path, history: list, k: int = 10) -> list:
    """Top-k from the staged folder in a process without bert4rec_hf; must equal the package's."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECK), str(folder), json.dumps(history), str(k)],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"the staged folder does not load without the package:\n{result.stderr[-3000:]}")
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    expected = recommender.recommend(history, k=k).items
    if remote != expected:
        raise RuntimeError(f"top-{k} differs without the package: {remote} != {expected}")
    return remote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a trained model folder (bert4rec train, examples/finetune.py, ...)")
    parser.add_argument("repo_id", help="the Hub repository, e.g. user/bert4rec-ml100k")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--history", nargs="+", help="raw item ids for the check (default: the first five items)")
    parser.add_argument("--dry-run", action="store_true", help="stage and check, do not upload")
    parser.add_argument("--stage-dir", help="keep the staged folder here (default: a temporary folder)")
    args = parser.parse_args()

    source = Path(args.model_dir)
    recommender = Bert4RecRecommender.from_pretrained(source, device="cpu")
    history = recommender.tokenizer.encode(args.history) if args.history else None  # unknown ids fail here
    history = recommender.tokenizer.decode(history) if history else recommender.tokenizer.items[:5]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.stage_dir) if args.stage_dir else Path(scratch)
        files = stage(recommender, source, folder)
        print(f"staged {folder}: {', '.join(files)}")
        top = check_without_package(recommender, folder, history)
        print(f"without the package, top-10 after {history}: {top} (same as bert4rec_hf)")
        if args.dry_run:
            print("dry run: nothing uploaded")
            return
        from huggingface_hub import HfApi

        api = HfApi()
        repo = api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), commit_message="Upload BERT4Rec recommender")
        print(f"uploaded to {repo}")


if __name__ == "__main__":
    main()
