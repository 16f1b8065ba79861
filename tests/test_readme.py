"""The README's Python examples run as written (in order, in one namespace)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
# blocks that need a network or train for minutes
SKIPPED = ("push_to_hub(", "run_bert4rec(", "tune_bert4rec(")


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    ran = 0
    for block in blocks:
        if any(marker in block for marker in SKIPPED):
            continue
        exec(compile(block, str(README), "exec"), namespace)
        ran += 1
    assert ran >= 5
