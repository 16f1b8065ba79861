"""Training speed on an idle CPU and beside a competing busy process, per thread policy.

    python benchmarks/cpu_contention.py                       # every policy, ml-100k-sized steps
    python benchmarks/cpu_contention.py --policies default 1-thread --steps 40

Each policy runs in a fresh Python process (OpenMP reads its environment when
torch loads), which times ``--steps`` training steps of a BERT4Rec of the
package's default size on ml-100k-shaped batches (batch 64, length 50, 1,682
items: forward, masked CE loss, backward, AdamW), first on the machine as it
is, then again while a competitor that this script starts (a pure-Python busy
loop, one process: a notebook, a second run, a compiler) spins beside it. It
prints milliseconds per step for both and their ratio. Run it on a machine
where nothing else is busy, or the "idle" column is not idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# name -> (environment for the measured process, torch_threads setting passed to the package)
POLICIES: dict[str, tuple[dict[str, str], str]] = {
    "default": ({}, "auto"),  # the package's choice
    "2-threads": ({"OMP_NUM_THREADS": "2"}, "2"),
    "2-threads-passive": ({"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}, "2"),
    "1-thread": ({"OMP_NUM_THREADS": "1"}, "1"),
}
POLICY_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def worker(steps: int, warmup: int, torch_threads: str) -> dict:
    """Times training steps in this process (after the package has applied ``torch_threads``)."""
    import torch

    from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedItemPrediction, DataCollatorForMaskedItemPrediction
    from bert4rec_hf.speedups_bert4rec import use_cpu_speedups
    from bert4rec_hf.training.threads import apply_thread_policy

    controller = apply_thread_policy(None if torch_threads == "auto" else int(torch_threads))
    torch.manual_seed(0)
    num_items, batch_size, length = 1_682, 64, 50
    model = Bert4RecForMaskedItemPrediction(Bert4RecConfig(vocab_size=num_items + 2, max_seq_length=length))
    model = use_cpu_speedups(model).train()  # as Bert4RecTrainer does
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    collator = DataCollatorForMaskedItemPrediction(max_seq_length=length, mask_ratio=0.2, vocab_size=num_items + 2)
    rows = [{"input_ids": torch.randint(2, num_items + 2, (length,)).tolist()} for _ in range(batch_size * 8)]
    batches = [collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    if controller is not None:
        controller.on_train_begin(None, None, None)  # as the Trainer does: all threads to start

    def step(index: int) -> None:
        loss = model(**batches[index % len(batches)]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad()
        if controller is not None:
            controller.after_step()

    for index in range(warmup):
        step(index)
    start = time.perf_counter()
    for index in range(steps):
        step(index)
    seconds = (time.perf_counter() - start) / steps
    return {"ms_per_step": round(seconds * 1000, 1), "threads_at_end": torch.get_num_threads()}


def measure(policy: str, steps: int, warmup: int) -> dict:
    environment, torch_threads = POLICIES[policy]
    env = {key: value for key, value in os.environ.items() if key not in POLICY_ENV}
    env.update(environment)
    command = [sys.executable, __file__, "--worker", torch_threads, "--steps", str(steps), "--warmup", str(warmup)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--competitors", type=int, default=1, help="busy processes started beside the busy runs")
    parser.add_argument("--output", help="also write the figures as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.steps, args.warmup, args.worker)))
        return

    print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}; {args.competitors} competitor(s)")
    results = {}
    for policy in args.policies:
        idle = measure(policy, args.steps, args.warmup)
        competitors = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competitors)
        ]
        try:
            time.sleep(0.5)
            busy = measure(policy, args.steps, args.warmup)
        finally:
            for competitor in competitors:
                competitor.kill()
                competitor.wait()
        results[policy] = {"idle": idle, "busy": busy, "ratio": round(busy["ms_per_step"] / idle["ms_per_step"], 2)}
        print(
            f"{policy:>18}: idle {idle['ms_per_step']:7.1f} ms/step ({idle['threads_at_end']} threads), "
            f"busy {busy['ms_per_step']:7.1f} ms/step ({busy['threads_at_end']} threads), "
            f"busy/idle {results[policy]['ratio']:.2f}"
        )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
