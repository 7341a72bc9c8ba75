"""The hub re-reads the gallery file when it changes and keeps the last good one."""

import yaml

from gallery_hub.gallery_source import GallerySource

EXAMPLE = {
    "title": "Demo",
    "path": "app.ipynb",
    "repo_url": "https://git.example.org/demo",
    "image_name": "demo:main",
    "image_url": "demo.svg",
}


def write(path, examples):
    path.write_text(yaml.safe_dump({"examples": examples}))


def test_changes_are_picked_up_and_bad_edits_keep_the_old_gallery(tmp_path, caplog):
    path = tmp_path / "gallery.yaml"
    write(path, {"one": EXAMPLE})
    source = GallerySource(path)
    assert list(source.current().examples) == ["one"]

    write(path, {"one": EXAMPLE, "two": {**EXAMPLE, "title": "Two"}})
    assert list(source.current().examples) == ["one", "two"]

    path.write_text("examples: {broken: {title: 1}}\n")
    assert list(source.current().examples) == ["one", "two"]
    assert source.error and "examples.broken" in source.error
    assert "keeping the last good one" in caplog.text

    write(path, {"three": EXAMPLE})
    assert list(source.current().examples) == ["three"]
    assert source.error is None


def test_a_missing_file_gives_an_empty_gallery(tmp_path):
    source = GallerySource(tmp_path / "nothing.yaml")
    assert source.current().examples == {}
    assert "cannot read" in source.error
