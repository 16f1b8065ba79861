# Sourced by the device call scripts (full_ranking_device_call.sh, distilled_device_call.sh) in the
# repo root. The lent GPU machine's Python 3.12 lacks `datasets` (three wheels in .whl, prepared here
# as the calling script's header says) and does not install the package's configuration/; then the
# versions, the GPU's use every 15 s to $OUT/smi.csv, and CUDA MPS, which lets the small kernels of
# runs side by side overlap. On a machine without a GPU it only prints the versions.
if [ -d .whl ] && command -v nvidia-smi >/dev/null; then  # the device machine's Python 3.12
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
  export PYTHONPATH=/tmp/site:$PWD
  # not installed there: the package's configuration/ (package_dir in setup.cfg) through a link
  [ -e bert4rec_hf/configuration ] || ln -s ../configuration bert4rec_hf/configuration
fi
export PYTHONUNBUFFERED=1
date -u; nproc; free -g | head -2
python3 -c "import torch, transformers, datasets, bert4rec_hf
print(torch.__version__, transformers.__version__, datasets.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 > "$OUT/smi.csv" 2>&1 &
  nvidia-cuda-mps-control -d && echo "MPS started"
  if ! timeout 60 python3 -c "import torch; torch.ones(1).cuda().sum().item(); print('CUDA under MPS ok')"; then
    echo quit | nvidia-cuda-mps-control; echo "MPS off: CUDA failed under it"
  fi
fi
