"""Benchmarks, run from the repository root: `.venv/bin/python -m benchmarks.<name>`.

They import the end-to-end harness (tests/e2e), which uses the project's own modules in
src/ as the tests do (pytest's `pythonpath`); put src/ on the path for them the same way.
"""

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parents[1] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
