#!/bin/bash
# Issue 24's recipe `distilled` at three seeds on one GPU (distilled_seeds.py): the goal's figure is
# the mean of three seeds of the recipe's own command, and a seed-S run trains its teachers
# (clozefirst seeds S+1..S+3) before itself, so seeds 0-2 need five teachers and three students. On
# the 2-core CPU that is about 14 core-hours (benchmarks/README.md, "Recipe `distilled`, three seeds"),
# more than a session holds; on one GPU the runs of a stage go side by side under CUDA MPS (one CPU
# core each), bf16.
# Two calls back to back (a warm machine keeps W; it is handed back 30 s after a call):
#   STAGE=teachers bash benchmarks/distilled_device_call.sh   # the five clozefirst teachers, side by side
#   STAGE=students bash benchmarks/distilled_device_call.sh   # the three students, their teachers linked in
# STAGE=all runs both in one call. A run cut short by LIMIT is run again by the next call (finished runs
# and their rankings are kept in W). A variant of the students: NAME=alpha1 STUDENT_SET=distillation_weight=1.0
# (students in W/alpha1_seed<S>, the teachers shared; a setting that changes the teachers needs another W).
# Each teacher trains 8,000 steps, each student 12,000, evaluated every 2,000 as the recipe's own command
# does; how long a stage takes on the GPU is unmeasured (the 2026-12-04 call:
# 16 runs side by side, about 20 steps/s each, 2 runs 50 steps/s; about 130 s per run for data,
# evaluations and rankings). JSON and logs (no weights) to $OUT.
#
# The device machine lacks `datasets` and ../shared; prepare once, in the repo root here:
#   printf '/.whl/\n/.carry/\n/.gpuwork/\n' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
#   mkdir -p .carry && cp ../shared/data/beauty/beauty.txt .carry/
# then each device call carrying .whl and .carry, timeout 600.
# Runs on CPU too, scaled down: OUT=/tmp/o DATA=small.txt STUDENT_SET="max_steps=8 eval_steps=8" W=/tmp/w bash ...
# (max_steps given there is the teachers' too: it sits above their recipe)
set -u
DATA=${DATA:-.carry/beauty.txt}; STAGE=${STAGE:-all}; SEEDS=${SEEDS:-0 1 2}; LIMIT=${LIMIT:-570}
W=${W:-.gpuwork/distilled}; NAME=${NAME:-student}; STUDENT_SET=${STUDENT_SET-}
source benchmarks/device_prelude.sh
# the teachers' stage ranks each teacher on the full catalog only (its students are the figure)
rankings=(full full_excluded pop100 uni100); [ "$STAGE" = teachers ] && rankings=(full)
timeout -s INT "$LIMIT" python3 benchmarks/distilled_seeds.py --dataset beauty --seeds $SEEDS --stage "$STAGE" \
  --name "$NAME" --parallel 8 --rankings "${rankings[@]}" --work-dir "$W" --output "$OUT/${NAME}_$STAGE.json" \
  --set recipe=distilled "data_path=$DATA" $STUDENT_SET > "$OUT/${NAME}_$STAGE.log" 2>&1
echo "distilled_seeds.py exit status $?"
date -u
tar czf "$OUT/logs_$STAGE.tgz" --exclude='*.safetensors' --exclude='*.png' --exclude='*.py' --exclude='checkpoint-*' -C "$W" .
tail -n 30 "$OUT/${NAME}_$STAGE.log"
