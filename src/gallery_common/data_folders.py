"""Each image's folder of the gallery data volume, and how it is seeded: one place for both
the hub (which mounts it read-only for visitors) and the builder (which fills it).

An image with `data:` in gallery.yaml gets `images/<name>/` of the gallery data volume at its
data path. The first time, the image's own files at that path are copied in (as Docker does
for a new named volume), so a mount never hides what the repository committed there; the
marker file records that, so it happens once. Standard library only: both images import this.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# Marks a data folder into which the image's own files were copied.
SEEDED = ".gallery-seeded"
# Where a seeding helper container has the folder.
SEED_MOUNT = "/gallery-seed"


def image_folder(image: str) -> PurePosixPath:
    """The folder of `image` (`<name>:<tag>` or `<name>`) inside the gallery data volume."""
    return PurePosixPath("images") / image.split(":", 1)[0]


def seed_script(uid: str) -> str:
    """sh: copy the image's files at $SOURCE into the folder at SEED_MOUNT, once.

    Runs as root in a helper container of the image itself; the folder ends up owned by
    `uid` (the user servers' user), the marker written last.
    """
    return (
        f"if [ ! -e {SEED_MOUNT}/{SEEDED} ]; then "
        f'if [ -d "$SOURCE" ]; then cp -a "$SOURCE"/. {SEED_MOUNT}/; fi; '
        f"chown -R {uid}:{uid} {SEED_MOUNT} && touch {SEED_MOUNT}/{SEEDED}; fi"
    )
