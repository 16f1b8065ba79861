"""A distilled configuration at several seeds, as its own command trains it (issue 24).

A run with ``distill_teachers: N`` at seed S first trains its configuration without teachers
(and with its ``teacher_overrides``) at seeds S+1 ... S+N, then itself. Seeds share teachers (seed 0's are seeds 1-3, seed 1's
2-4), so this trains every teacher seed once, all side by side (stage 1), links each
student's teachers into its folder where the run would have trained them
(``<run>/teachers/teacher-<k>``), and runs the student's own command with ``--resume``,
which keeps finished teachers (stage 2). Every model, teachers included, is then ranked on
the test items four ways (``bert4rec evaluate``): the whole catalog with the history kept
(the headline) and removed, and 100 negatives by popularity and uniformly.

    # Beauty, recipe distilled at seeds 0-2: five clozefirst teachers, then three students
    python benchmarks/distilled_seeds.py --dataset beauty --seeds 0 1 2 --parallel 2 \\
        --set recipe=distilled data_path=../shared/data/beauty/beauty.txt save_steps=500 \\
        --work-dir bench_out/distilled --output bench_out/distilled/beauty.json
    # a variant of the students on the same teachers (under <work-dir>/alpha1_seed<S>)
    python benchmarks/distilled_seeds.py ... --name alpha1 --set ... distillation_weight=1.0
    # ml-100k's default, with three teachers
    python benchmarks/distilled_seeds.py --dataset ml-100k --seeds 1 2 3 \\
        --set distill_teachers=3 distillation_weight=0.5 --work-dir ... --output ...
    # the students trained longer than their teachers (teacher_overrides)
    python benchmarks/distilled_seeds.py --dataset ml-100k --seeds 1 2 3 --name long \\
        --set distill_teachers=3 distillation_weight=0.9 epochs=6 'teacher_overrides={epochs: 4}' ...
    # the table of one or more outputs
    python benchmarks/distilled_seeds.py --table bench_out/distilled/beauty.json

Finished runs (``metrics.json`` and no checkpoints) and their rankings are reused (a run
trained with other settings than its job's is refused, naming them), so a
call cut short (a device call's time limit) is continued by the same command, and
``--stage teachers`` / ``--stage students`` split the two stages between two calls
(``distilled_device_call.sh``); the output JSON is rewritten as each run finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from full_ranking_ablations import METRICS, RANKINGS, rank_test, read_ranking
from seed_sweep import CLI, run_jobs

from bert4rec_hf.training.config import RunConfig, load_config, parse_overrides
from bert4rec_hf.training.distillation import (
    FINISHED_RUN,
    TEACHER,
    TEACHERS,
    check_distillation,
    check_teacher_data,
    finished_run,
    teacher_settings,
)
from bert4rec_hf.training.pipeline import CHECKPOINTS, finished_run_changes, with_data_path
from bert4rec_hf.training.trainer import last_checkpoint

# every ranking asked of `bert4rec evaluate` explicitly: a data set's YAML may change the run's own test
TEST_RANKINGS = {label: options or ["--no-exclude-history"] for label, options in RANKINGS.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--log", help="an interaction log file to train on instead of --dataset (`bert4rec train LOG`)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the students' seeds")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="the students' overrides")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--no-bf16", action="store_true", help="float32 even where the GPU supports bf16")
    parser.add_argument(
        "--rankings",
        nargs="+",
        default=list(TEST_RANKINGS),
        choices=list(TEST_RANKINGS),
        help="test rankings of each model",
    )
    parser.add_argument(
        "--name", default="student",
        help="the students' folders (<name>_seed<S>); a variant that changes the teachers needs its own --work-dir",
    )  # fmt: skip
    parser.add_argument(
        "--stage", default="all", choices=["all", "teachers", "students"],
        help="both stages, or one (students: the teachers' stage must have finished; two device calls)",
    )  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=Path("bench_out/distilled"))
    parser.add_argument("--output", type=Path, default=Path("bench_out/distilled/distilled.json"))
    parser.add_argument("--table", type=Path, nargs="+", metavar="JSON", help="print the table of these outputs")
    return parser.parse_args(argv)


def ranking_file(folder: Path, label: str) -> Path:
    return folder.parent / f"{folder.name}_{label}.json"


def ranked(folder: Path, label: str, env: dict[str, str]) -> dict[str, float]:
    """The test metrics of ``folder``'s model under one ranking; one a call before wrote is read."""
    output = ranking_file(folder, label)
    if output.is_file():
        return read_ranking(output)
    return rank_test(str(folder), TEST_RANKINGS[label], output, env)


def job_config(args: argparse.Namespace, overrides: list[str], seed: int) -> RunConfig:
    """The configuration the job's ``bert4rec train`` command resolves."""
    layer = parse_overrides([*args.common, *overrides, f"seed={seed}"])
    return load_config(None if args.log else args.dataset, None, with_data_path(layer, args.log))


def train_and_rank(args: argparse.Namespace, job: tuple, labels: list[str], may_train: bool = True) -> dict:
    """One ``bert4rec train`` (skipped when the job's folder holds a finished run), then its
    ``labels`` rankings; ``may_train`` false: a finished run and the rankings it has, or an error."""
    role, seed, folder, overrides, teachers = job
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    record = {"variant": role, "seed": seed, "model_dir": str(folder)}
    start = time.perf_counter()
    if finished_run(folder):
        changes = finished_run_changes(folder, job_config(args, overrides, seed))
        if changes:
            return {**record, "error": f"{folder} holds a run trained with other settings ({changes}): use another --work-dir"}
        record["reused"] = True
    elif not may_train:
        return {**record, "error": f"{folder} holds no finished run: train the teachers first (--stage teachers)"}
    else:
        for label in TEST_RANKINGS:  # an earlier model's rankings, if this folder held one: not this model's
            ranking_file(folder, label).unlink(missing_ok=True)
        if teachers:
            link_teachers(folder, teachers)
        folder.parent.mkdir(parents=True, exist_ok=True)
        # a student's folder holds its teachers, which --resume keeps; a teacher killed mid-run resumes too
        resume = role == "student" or last_checkpoint(folder / CHECKPOINTS) is not None
        command = [
            sys.executable, "-c", CLI, "train", *args.data, "--output-dir", str(folder),
            "--resume" if resume else "--overwrite", "--set", *args.common, *overrides, f"seed={seed}",
        ]  # fmt: skip
        log_file = folder.parent / f"{folder.name}.log"  # not with_suffix: a --name may hold a dot (alpha0.5)
        with open(log_file, "a") as log:
            returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if returncode != 0 or not finished_run(folder):
            tail = log_file.read_text(errors="replace")[-600:]
            return {**record, "error": f"exit status {returncode}; {log_file} ends: {tail}"}
        record["wall_seconds"] = time.perf_counter() - start
    record["steps"] = json.loads((folder / FINISHED_RUN).read_text())["global_steps"]
    if not may_train:
        labels = [label for label in TEST_RANKINGS if ranking_file(folder, label).is_file()]
    record["rankings"] = {label: ranked(folder, label, env) for label in labels}
    return record


def teacher_overrides(config: RunConfig) -> list[str]:
    """A teacher's ``--set`` beside the students' own: their configuration as the run itself trains
    its teachers (``teacher_settings``)."""
    return [f"{key}={json.dumps(value)}" for key, value in teacher_settings(config).items()]  # YAML: null, not None


def plan(seeds: list[int], config: RunConfig, work_dir: Path, name: str = "student") -> tuple[list[tuple], list[tuple]]:
    """The jobs of both stages: each teacher seed once, then each student with the folders
    of its teachers (seeds ``seed + 1`` ... ``seed + distill_teachers``), as ``(role, seed, folder,
    overrides, teachers)``. Students are ``<name>_seed<S>``: variants of the students (a
    ``distillation_weight``, say) share one ``work_dir``'s teachers under other names."""
    count = config["distill_teachers"]
    teacher_seeds = sorted({seed + k for seed in seeds for k in range(1, count + 1)})
    folders = {seed: work_dir / f"teacher_seed{seed}" for seed in teacher_seeds}
    teachers = [("teacher", seed, folders[seed], teacher_overrides(config), []) for seed in teacher_seeds]
    students = [
        ("student", seed, work_dir / f"{name}_seed{seed}", [], [folders[seed + k] for k in range(1, count + 1)])
        for seed in seeds
    ]
    return teachers, students


def untrained_first(jobs: list[tuple]) -> list[tuple]:
    """``jobs`` with those whose folder holds no finished run first, each group in its order:
    ranking finished teachers (four rankings each) must not hold back the ones still to train,
    which the students wait for."""
    return sorted(jobs, key=lambda job: finished_run(job[2]))


def link_teachers(student: Path, teachers: list[Path]) -> None:
    """``student/teachers/teacher-<k>``: the k-th teacher's folder, where the run trains it."""
    folder = student / TEACHERS
    folder.mkdir(parents=True, exist_ok=True)
    for k, teacher in enumerate(teachers, 1):
        link = folder / f"{TEACHER}{k}"
        if not link.exists():
            link.symlink_to(teacher.resolve(), target_is_directory=True)


def run(args: argparse.Namespace) -> int:
    args.data = [args.log] if args.log else ["--dataset", args.dataset]
    overrides = parse_overrides(args.set)
    if "seed" in overrides:
        raise SystemExit(f"distilled_seeds: --set seed={overrides['seed']}: give the students' seeds with --seeds")
    config = load_config(None if args.log else args.dataset, None, overrides)
    if not config["distill_teachers"]:
        raise SystemExit("distilled_seeds: the students' configuration trains no teachers; --set distill_teachers=N")
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not args.no_bf16
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    args.common = [*args.set, "report_to=none", f"torch_threads={args.threads}", f"bf16={str(bf16).lower()}"]
    teachers, students = plan(args.seeds, config, args.work_dir, args.name)
    # refused before any teacher trains, as the students' own runs would refuse them after
    check_distillation(config)
    _, seed, _, teacher_set, _ = teachers[0]
    check_teacher_data(job_config(args, [], seed - 1), job_config(args, teacher_set, seed))
    print(f"{len(teachers)} teachers, then {len(students)} students, on {device} (bf16: {bf16})", flush=True)
    started, runs = time.perf_counter(), []
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def write(done: list[dict]) -> None:  # after every finished run: a call cut short keeps its runs
        result = {
            "data": args.data, "set": args.set, "name": args.name, "device": device, "bf16": bf16,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "seconds": time.perf_counter() - started,
            "runs": [*runs, *done],
        }  # fmt: skip
        args.output.write_text(json.dumps(result, indent=1))

    # the students' stage trains no teacher and ranks them no further: it reads what the teachers' stage left
    train = partial(train_and_rank, args, labels=args.rankings, may_train=args.stage != "students")
    runs = sorted(run_jobs(train, untrained_first(teachers), args.parallel, on_done=write), key=lambda r: r["seed"])
    if args.stage == "teachers":
        ready = []
    else:
        failed = {record["model_dir"] for record in runs if "error" in record}
        ready = [job for job in students if not failed & {str(folder) for folder in job[4]}]  # the rest: not run
        runs = [
            *runs,
            *run_jobs(partial(train_and_rank, args, labels=args.rankings), ready, args.parallel, on_done=write),
        ]
    write([])
    print("\n".join(table_lines(runs)))
    left_out = args.stage != "teachers" and len(ready) < len(students)
    return 1 if left_out or any("error" in record for record in runs) else 0


def _cell(runs: list[dict], ranking: str) -> str:
    """``NDCG@10 / HR@10`` of one run, or their means over several; — where one is not ranked."""
    values = [[r["rankings"].get(ranking, {}).get(metric) for r in runs] for metric in METRICS]
    if any(value is None for column in values for value in column):
        return "—"
    return " / ".join(f"{statistics.mean(column):.{4 if len(runs) == 1 else 5}f}" for column in values)


def table_lines(runs: list[dict]) -> list[str]:
    """One row per run and the mean of each role: NDCG@10 / HR@10 under every ranking."""
    header = " | ".join(f"{label} NDCG@10 / HR@10" for label in TEST_RANKINGS)
    lines = [f"| run | steps | {header} | train s |", "|---|---:|" + "---|" * len(TEST_RANKINGS) + "---:|"]
    for role in ("student", "teacher"):
        done = [r for r in runs if r["variant"] == role and "error" not in r]
        for record in done:
            cells = " | ".join(_cell([record], label) for label in TEST_RANKINGS)
            seconds = "reused" if record.get("reused") else f"{record['wall_seconds']:,.0f}"
            lines.append(f"| {role} seed {record['seed']} | {record['steps']:,} | {cells} | {seconds} |")
        if len(done) > 1:
            cells = " | ".join(_cell(done, label) for label in TEST_RANKINGS)
            lines.append(f"| **{role}s, mean of {len(done)}** | | {cells} | |")
    lines += [f"{r['variant']} seed {r['seed']} failed: {r['error']}" for r in runs if "error" in r]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print("\n".join(table_lines([r for path in args.table for r in json.loads(path.read_text())["runs"]])))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
