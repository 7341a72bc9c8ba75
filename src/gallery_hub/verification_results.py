"""The verifications' results, kept on the hub's state volume.

One JSON file per example (`<id>.json`) with the last result, its screenshot for admins
(`<id>.png`) and its thumbnail (`<id>-thumbnail.png`, from the last render that passed;
from a failed one only while the example has never passed). Written through a temporary
file and a rename, so a reader never sees half a result. Pure file handling, no tornado.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gallery_common.verifier_contract import RenderError

log = logging.getLogger("gallery_hub")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class VerificationResult:
    """How the last verification of one example went."""

    example: str
    passed: bool
    at: str  # ISO 8601, UTC: when it ended
    image: str
    image_id: str | None
    commit: str | None
    fingerprint: str  # of the gallery entry it verified (verification_plan.fingerprint)
    render_s: float | None  # navigation until Voila finished
    total_s: float  # start of the server until it stopped again
    error: RenderError | None = None
    page_errors: list[str] = field(default_factory=list)

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.at)

    def to_json(self) -> dict:
        data = asdict(self)
        data["error"] = self.error.to_json() if self.error else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> VerificationResult:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["error"] = RenderError.from_json(data.get("error"))
        return cls(**known)


class VerificationResults:
    """The results of every example, read once and kept in memory; written through."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._results: dict[str, VerificationResult] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.directory.is_dir():
            return
        for path in self.directory.glob("*.json"):
            try:
                result = VerificationResult.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as e:
                log.warning("verification: ignoring unreadable %s: %s", path, e)
                continue
            self._results[result.example] = result

    def get(self, example_id: str) -> VerificationResult | None:
        self._load()
        return self._results.get(example_id)

    def all(self) -> dict[str, VerificationResult]:
        self._load()
        return dict(self._results)

    def record(
        self, result: VerificationResult, screenshot: bytes | None, thumbnail: bytes | None
    ) -> None:
        """Keep `result` (and its pictures) as the example's last verification."""
        self._load()
        self.directory.mkdir(parents=True, exist_ok=True)
        had_thumbnail = self.thumbnail_path(result.example).is_file()
        if screenshot:
            self._write(self.screenshot_path(result.example), screenshot)
        if thumbnail and (result.passed or not had_thumbnail):
            self._write(self.thumbnail_path(result.example), thumbnail)
        self._write(self._path(result.example), json.dumps(result.to_json(), indent=1).encode())
        self._results[result.example] = result

    def screenshot_path(self, example_id: str) -> Path:
        return self.directory / f"{example_id}.png"

    def thumbnail_path(self, example_id: str) -> Path:
        return self.directory / f"{example_id}-thumbnail.png"

    def thumbnail_version(self, example_id: str) -> str | None:
        """Changes whenever the thumbnail does (for the image URL); None: no thumbnail."""
        try:
            return str(self.thumbnail_path(example_id).stat().st_mtime_ns)
        except OSError:
            return None

    def _path(self, example_id: str) -> Path:
        return self.directory / f"{example_id}.json"

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(data)
        with contextlib.suppress(OSError):
            temporary.chmod(0o640)
        os.replace(temporary, path)
