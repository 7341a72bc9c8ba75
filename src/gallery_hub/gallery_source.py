"""The gallery file as the hub serves it: re-read when it changes, last good one kept."""

from __future__ import annotations

import logging
from pathlib import Path

from gallery_common.gallery_file import Gallery, GalleryFileError, load_gallery

log = logging.getLogger("gallery_hub")


class GallerySource:
    """Returns the current gallery; an invalid edit logs the error and keeps the old one."""

    def __init__(self, path: Path):
        self.path = path
        self._gallery = Gallery(images={}, examples={})
        self._stamp: tuple[int, int, int] | None = None
        self.error: str | None = None

    def current(self) -> Gallery:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError as e:
            stamp = None
            self._fail(f"cannot read {self.path}: {e.strerror}")
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                self._gallery = load_gallery(self.path)
            except GalleryFileError as e:
                self._fail(str(e))
            else:
                self.error = None
                log.info("loaded %s: %d examples", self.path, len(self._gallery.examples))
        return self._gallery

    def _fail(self, message: str) -> None:
        if message != self.error:
            log.error(
                "gallery file %s is invalid, keeping the last good one: %s", self.path, message
            )
        self.error = message


_sources: dict[Path, GallerySource] = {}


def gallery_source(path: Path) -> GallerySource:
    """The one GallerySource for `path` in this process (the pages and the spawner share it)."""
    if path not in _sources:
        _sources[path] = GallerySource(path)
    return _sources[path]
