"""What a rendered Voila page says about its notebook: the first error, if any.

Pure functions over what the browser read from the page (no Playwright here), so they
unit-test fast. Voila streams one `<div cell-index="N">` per executed cell (N counts from
1, markdown cells included) and stops at the first cell that raises. Error outputs and
stderr streams look alike in the page (`data-mime-type="application/vnd.jupyter.stderr"`);
an error output is the one that reads like a traceback, or Voila's own words for one.
"""

from __future__ import annotations

import re

from gallery_common.verifier_contract import RenderError

TRACEBACK_LINES = 8
# The last line of a Python traceback: `ZeroDivisionError: division by zero`, `KeyboardInterrupt`.
EXCEPTION_LINE = re.compile(
    r"^(?P<name>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Fault))(?::\s?(?P<message>.*))?$"
)
# What Voila writes instead, when tracebacks are hidden or the server itself failed.
VOILA_ERROR_MARKERS = (
    "There was an error when executing cell",
    "An exception occurred at the server (not the notebook)",
)
VOILA_TIMEOUT_MARKER = "Cell execution timed out"


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.replace("\r", "").split("\n") if line.strip()]


def is_error_output(text: str) -> bool:
    """True for a traceback (or Voila's note about one), False for warnings and other stderr."""
    if "Traceback (most recent call last)" in text or VOILA_TIMEOUT_MARKER in text:
        return True
    if any(marker in text for marker in VOILA_ERROR_MARKERS):
        return True
    lines = _lines(text)
    if not lines:
        return False
    match = EXCEPTION_LINE.match(lines[-1].strip())
    # `path:3: UserWarning: ...` starts with the path: a warning, not an exception.
    return bool(match) and not match.group("name").endswith("Warning")


def exception_of(text: str) -> tuple[str | None, str]:
    """The exception's name and message, from a traceback's last line."""
    if VOILA_TIMEOUT_MARKER in text:
        return "TimeoutError", "a cell ran longer than Voila allows"
    for marker in VOILA_ERROR_MARKERS:
        if marker in text:
            return None, text.strip().splitlines()[0][:300]
    for line in reversed(_lines(text)):
        match = EXCEPTION_LINE.match(line.strip())
        if match:
            return match.group("name"), (match.group("message") or "").strip()[:300]
    return None, ""


def first_error(outputs: list[dict], cells: int | None) -> RenderError | None:
    """The first error among the page's stderr outputs (`[{"cell": N, "text": ...}]`)."""
    for output in outputs:
        text = output.get("text") or ""
        if not is_error_output(text):
            continue
        name, message = exception_of(text)
        kind = "error-output"
        if name == "TimeoutError":
            kind = "timeout"
        elif name and name.endswith("DeadKernelError"):
            kind, name = "kernel-died", "DeadKernelError"
        return RenderError(
            kind=kind,
            message=message,
            cell=output.get("cell"),
            cells=cells,
            exception=name,
            traceback=_lines(text)[-TRACEBACK_LINES:],
        )
    return None


def progress_of(scripts: list[str]) -> tuple[int | None, int | None]:
    """(last cell Voila has rendered, cells in the notebook) from its `voila_process(N, M)`.

    Voila streams a cell (with its `voila_process` call) once the cell has run.
    """
    last = total = None
    for script in scripts:
        match = re.search(r"voila_process\((\d+),\s*(\d+)\)", script)
        if match:
            last, total = int(match.group(1)), int(match.group(2))
    return last, total
