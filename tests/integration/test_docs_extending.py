"""The code blocks of docs/extending.md run (in order, in one namespace), so the examples cannot rot."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def test_extending_doc_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2, "docs/extending.md should hold the model and the op examples"
    namespace: dict = {"__name__": "docs_extending"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/extending.md block {i}", "exec"), namespace)
