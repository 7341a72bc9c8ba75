"""Which examples to verify next, and why: pure logic over what the hub knows now.

An example is due when its image is built and
- it was never verified, or an admin asked for it;
- its image changed (a new build), or the builder finished a build of it since (a
  rebuild that reused the commit, or one from `build-image`);
- what its gallery entry renders changed (the image, the path, the view);
- its last verification is older than GALLERY_VERIFY_EVERY_H (0: never for that reason).
Examples whose verification could not run (the verifier was down, the hub refused the
start) wait `retry_at` before they are tried again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gallery_common.gallery_file import Example
from gallery_hub.verification_results import VerificationResult


def fingerprint(example: Example) -> str:
    """What of a gallery entry a render depends on."""
    what = f"{example.image_name}\n{example.path}\n{example.view}"
    return hashlib.sha256(what.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Due:
    example: str
    reason: str  # for the log: "never verified", "new image", ...


def due_examples(
    examples: Mapping[str, Example],
    results: Mapping[str, VerificationResult],
    image_ids: Mapping[str, str | None],
    built_at: Mapping[str, datetime],
    *,
    now: datetime,
    every_s: float,
    requested: set[str],
    retry_at: Mapping[str, datetime],
) -> list[Due]:
    """The examples to verify, most urgent first (asked for, never verified, then oldest)."""
    due: list[tuple[int, datetime, Due]] = []
    for example in examples.values():
        image_id = image_ids.get(example.image_name)
        if not image_id:
            continue  # not built: nothing to launch
        result = results.get(example.id)
        if example.id in requested:
            due.append((0, now, Due(example.id, "asked for")))
            continue
        if example.id in retry_at and now < retry_at[example.id]:
            continue
        if result is None:
            due.append((1, now, Due(example.id, "never verified")))
            continue
        reason = _reason(example, result, image_id, built_at.get(example.image_name), now, every_s)
        if reason:
            due.append((2, result.when, Due(example.id, reason)))
    return [d for _, _, d in sorted(due, key=lambda t: (t[0], t[1], t[2].example))]


def _reason(
    example: Example,
    result: VerificationResult,
    image_id: str,
    built_at: datetime | None,
    now: datetime,
    every_s: float,
) -> str | None:
    if result.image_id != image_id:
        return "new image"
    if built_at is not None and built_at > result.when:
        return "built again"
    if result.fingerprint != fingerprint(example):
        return "gallery entry changed"
    if every_s > 0 and (now - result.when).total_seconds() >= every_s:
        return "periodic check"
    return None
