"""Previous images: their names, and which of them stay."""

from __future__ import annotations

from gallery_builder.image_retention import (
    PreviousImage,
    is_previous_of,
    is_previous_tag,
    previous_images,
    previous_tag,
    split_kept,
)


def test_previous_tags_name_the_image_they_replaced() -> None:
    tag = previous_tag("demo:main", "sha256:0123456789abcdef")
    assert tag == "demo:gallery-previous-main-0123456789ab"
    assert is_previous_of(tag, "demo:main") and is_previous_tag(tag)
    # "main-x"'s previous images are not "main"'s, and the other way round.
    other = previous_tag("demo:main-x", "sha256:0123456789abcdef")
    assert not is_previous_of(other, "demo:main")
    assert not is_previous_of(tag, "demo:main-x")
    assert not is_previous_tag("demo:main")


def test_long_tags_still_fit_dockers_128_characters() -> None:
    image = "demo:" + "b" * 128
    tag = previous_tag(image, "sha256:" + "f" * 64)
    assert len(tag.split(":", 1)[1]) <= 128 and is_previous_of(tag, image)


def _previous(name: str, built: str, used_by: tuple[str, ...] = ()) -> PreviousImage:
    return PreviousImage(name, "sha256:" + name, "c" * 40, built, 1, used_by)


def test_the_newest_stay_and_older_ones_go_unless_a_container_uses_them() -> None:
    old = _previous("old", "2026-01-01T00:00:00Z")
    older = _previous("older", "2025-01-01T00:00:00Z", used_by=("jupyter-alice",))
    oldest = _previous("oldest", "2024-01-01T00:00:00Z")
    kept, removed = split_kept([oldest, old, older], keep=1)
    assert (kept, removed) == ([old, older], [oldest])
    assert split_kept([old], keep=0) == ([], [old])


def test_previous_images_are_read_from_image_summaries() -> None:
    summaries = [
        {
            "Id": "sha256:a",
            "RepoTags": ["demo:gallery-previous-main-a", "demo:main"],
            "Labels": {
                "org.neurolang-gallery.commit": "a" * 40,
                "org.neurolang-gallery.build-time": "2026-01-01T00:00:00Z",
            },
            "Size": 5,
        },
        {"Id": "sha256:b", "RepoTags": ["demo:gallery-previous-v1-b"], "Labels": {}, "Size": 6},
    ]
    found = previous_images("demo:main", summaries, {"sha256:a": ["jupyter-bob"]})
    assert found == [
        PreviousImage(
            "demo:gallery-previous-main-a",
            "sha256:a",
            "a" * 40,
            "2026-01-01T00:00:00Z",
            5,
            ("jupyter-bob",),
        )
    ]
