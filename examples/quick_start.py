#!/usr/bin/env python
"""The quick start, as RecBole's ``run_recbole(model='BERT4Rec', dataset='ml-100k')``.

Trains on the bundled MovieLens-100K with the shipped configuration, prints the
validation and test metrics, and writes the model folder to outputs/ml-100k.
Pass config files and overrides the RecBole way, e.g.
``run_bert4rec("ml-100k", config_file_list=["my.yaml"], config_dict={"epochs": 20})``.
"""

from bert4rec_hf import run_bert4rec

if __name__ == "__main__":
    results = run_bert4rec(dataset="ml-100k")
    print(results["test"]["test_ndcg@10"])
