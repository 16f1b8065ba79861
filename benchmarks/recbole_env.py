"""RecBole 1.2.1 in a virtual environment of its own, built on first use.

RecBole is not a dependency of bert4rec-hf: its pins (ray 2.6, numpy < 2, ...)
would clash with ours. ``ensure_recbole_python()`` returns the python of
``benchmarks/.venv-recbole`` (``--recbole-venv`` elsewhere), building it when
missing with the recipe that works on a CPU machine:

    pip install torch==2.13.0
    pip install recbole==1.2.1
    pip install "setuptools<81" "numpy<2" "pandas<3"   # ray 2.6.3 needs pkg_resources and np.bool8;
                                                       # RecBole uses np.float_

The venv is built in a temporary sibling folder and renamed only once
``import recbole`` works in it, so a failed build never leaves a half venv
behind; any failure raises ``RecBoleEnvError`` with the failing step and the
tail of pip's output.

    python benchmarks/recbole_env.py            # build (or check) it and print its python
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import venv
from pathlib import Path

DEFAULT_VENV = Path(__file__).resolve().parent / ".venv-recbole"
RECBOLE_VERSION = "1.2.1"
INSTALL_STEPS: tuple[tuple[str, ...], ...] = (
    ("torch==2.13.0",),
    (f"recbole=={RECBOLE_VERSION}",),
    ("setuptools<81", "numpy<2", "pandas<3"),
)
CHECK = (
    "import recbole, torch, numpy; from recbole.quick_start import run_recbole; "
    "from recbole.config import Config; from recbole.data import create_dataset, data_preparation; "
    "print(recbole.__version__, torch.__version__, numpy.__version__)"
)


class RecBoleEnvError(RuntimeError):
    """RecBole's virtual environment is missing and could not be built."""


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def check_recbole(python: Path) -> str | None:
    """``"recbole torch numpy"`` versions when RecBole imports in ``python``, else None."""
    if not python.is_file():
        return None
    done = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    version = done.stdout.strip().splitlines()[-1]
    return version if version.split()[0] == RECBOLE_VERSION else None


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def build_venv(venv_dir: Path, log=print) -> Path:
    """Builds RecBole's venv at ``venv_dir`` (replacing an unusable one)."""
    staging = venv_dir.with_name(venv_dir.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    log(f"Building RecBole {RECBOLE_VERSION} in {venv_dir} (first use; a few minutes)...")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(staging)
    except Exception as err:  # ensurepip missing, disk full, ...
        raise RecBoleEnvError(f"cannot create a virtual environment at {staging}: {err}") from err
    python = venv_python(staging)
    for packages in INSTALL_STEPS:
        log(f"  pip install {' '.join(packages)}")
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *packages], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RecBoleEnvError(
                f"building RecBole's venv failed at 'pip install {' '.join(packages)}' (exit {done.returncode}); "
                f"the half-built venv is left at {staging} for inspection.\n{_tail(done.stdout + done.stderr)}"
            )
    if check_recbole(python) is None:
        done = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True)
        raise RecBoleEnvError(
            f"RecBole was installed in {staging} but does not import:\n{_tail(done.stdout + done.stderr)}"
        )
    shutil.rmtree(venv_dir, ignore_errors=True)
    staging.rename(venv_dir)
    # venv scripts hold absolute paths to the staging folder; the python binary and
    # `python -m ...` do not depend on them, and that is all the benchmark uses.
    return venv_python(venv_dir)


def ensure_recbole_python(venv_dir: str | Path | None = None, build: bool = True, log=print) -> Path:
    """The python of a working RecBole venv; builds it when absent (``build=False``: raise instead)."""
    venv_dir = Path(venv_dir) if venv_dir else DEFAULT_VENV
    python = venv_python(venv_dir)
    if check_recbole(python) is not None:
        return python
    if not build:
        raise RecBoleEnvError(f"no working RecBole {RECBOLE_VERSION} at {venv_dir}; run without --no-build to build it")
    return build_venv(venv_dir, log=log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="where the venv lives (default: %(default)s)")
    args = parser.parse_args()
    try:
        python = ensure_recbole_python(args.venv)
    except RecBoleEnvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{python}: recbole/torch/numpy {check_recbole(python)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
