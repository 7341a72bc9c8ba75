"""gallery.yaml: the shipped file is valid, and every mistake names the entry and key."""

from pathlib import Path

import pytest
import yaml

from gallery_common.gallery_file import GalleryFileError, load_gallery, parse_gallery

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE = {
    "title": "Demo",
    "description": "A demo",
    "path": "app.ipynb",
    "repo_url": "https://git.example.org/demo",
    "image_name": "demo:main",
    "image_url": "demo.svg",
}


def test_the_shipped_gallery_is_valid_and_complete():
    gallery = load_gallery(ROOT / "gallery.yaml")
    assert set(gallery.images) == {"neuroweb"}
    assert gallery.images["neuroweb"].memory == 9
    assert len(gallery.examples) == 7
    for example in gallery.examples.values():
        assert example.image_name == "neuroweb:master"
        if example.image_url and not example.image_url.startswith("https://"):
            assert (ROOT / "gallery" / "thumbnails" / example.image_url).is_file()


def test_defaults_and_values():
    gallery = parse_gallery(
        {
            "images": {"demo": {"repo": "https://x.org/demo", "cpu": 2}},
            "examples": {"demo": EXAMPLE, "nb": {**EXAMPLE, "view": "notebook", "warm": 2}},
        }
    )
    assert gallery.images["demo"].ref is None
    assert gallery.images["demo"].cpu == 2.0
    assert gallery.examples["demo"].view == "voila"
    assert gallery.examples["nb"].view == "notebook"
    assert (gallery.examples["demo"].warm, gallery.examples["nb"].warm) == (0, 2)


def test_image_url_is_optional():
    without = {k: v for k, v in EXAMPLE.items() if k != "image_url"}
    gallery = parse_gallery({"examples": {"demo": without, "empty": {**EXAMPLE, "image_url": ""}}})
    assert gallery.examples["demo"].image_url == ""
    assert gallery.examples["empty"].image_url == ""


def test_an_images_shared_data():
    gallery = parse_gallery(
        {
            "images": {
                "neuroweb": {"repo": "https://x.org/n", "data": {"path": "gallery/neurolang_data"}},
                "other": {"repo": "https://x.org/o", "data": {"path": "/srv/d", "volume": "v1"}},
                "plain": {"repo": "https://x.org/p"},
            },
            "examples": {"demo": {**EXAMPLE, "image_name": "neuroweb:master"}},
        }
    )
    data = gallery.images["neuroweb"].data
    assert (data.path, data.volume) == ("/home/jovyan/gallery/neurolang_data", None)
    assert gallery.images["other"].data.volume == "v1"
    assert gallery.images["plain"].data is None
    assert gallery.data_for("neuroweb:master") == data
    assert gallery.data_for("unknown:v1") is None


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ([], ""),
        ({"pictures": {}}, "pictures"),
        ({"images": {"Bad Name": {"repo": "x"}}}, "images.Bad Name"),
        ({"images": {"demo": {}}}, "images.demo.repo"),
        ({"images": {"demo": {"repo": "x", "memory": "lots"}}}, "images.demo.memory"),
        ({"images": {"demo": {"repo": "x", "cpu": -1}}}, "images.demo.cpu"),
        ({"images": {"demo": {"repo": "x", "colour": 1}}}, "images.demo.colour"),
        ({"images": {"d": {"repo": "x", "data": {}}}}, "images.d.data.path"),
        ({"images": {"d": {"repo": "x", "data": {"path": "../etc"}}}}, "images.d.data.path"),
        ({"images": {"d": {"repo": "x", "data": {"path": "/"}}}}, "images.d.data.path"),
        (
            {"images": {"d": {"repo": "x", "data": {"path": "a", "volume": "-x"}}}},
            "images.d.data.volume",
        ),
        ({"images": {"d": {"repo": "x", "data": {"path": "a", "size": 1}}}}, "images.d.data.size"),
        ({"images": {"d": {"repo": "x", "data": "a"}}}, "images.d.data"),
        ({"examples": {"demo": {**EXAMPLE, "title": ""}}}, "examples.demo.title"),
        ({"examples": {"demo": {**EXAMPLE, "path": "/etc/passwd"}}}, "examples.demo.path"),
        ({"examples": {"demo": {**EXAMPLE, "path": "../x.py"}}}, "examples.demo.path"),
        ({"examples": {"demo": {**EXAMPLE, "image_name": "demo"}}}, "examples.demo.image_name"),
        ({"examples": {"demo": {**EXAMPLE, "repo_url": "ftp://x"}}}, "examples.demo.repo_url"),
        ({"examples": {"demo": {**EXAMPLE, "image_url": "../x.png"}}}, "examples.demo.image_url"),
        ({"examples": {"demo": {**EXAMPLE, "view": "lab"}}}, "examples.demo.view"),
        ({"examples": {"demo": {**EXAMPLE, "warm": -1}}}, "examples.demo.warm"),
        ({"examples": {"demo": {**EXAMPLE, "warm": 1.5}}}, "examples.demo.warm"),
        ({"examples": {"demo": {**EXAMPLE, "warm": 99}}}, "examples.demo.warm"),
        ({"examples": {"demo": {**EXAMPLE, "warm": True}}}, "examples.demo.warm"),
        ({"examples": {"Demo!": EXAMPLE}}, "examples.Demo!"),
        ({"examples": {"with_underscore": EXAMPLE}}, "examples.with_underscore"),
        ({"examples": {"a" * 31: EXAMPLE}}, "examples." + "a" * 31),
    ],
)
def test_errors_name_the_entry_and_key(data, where):
    with pytest.raises(GalleryFileError) as info:
        parse_gallery(data)
    assert info.value.where == where


def test_invalid_yaml_is_a_gallery_error(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("examples: [unclosed")
    with pytest.raises(GalleryFileError, match="not valid YAML"):
        load_gallery(path)


def test_round_trip_through_yaml(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"examples": {"demo": EXAMPLE}}))
    assert load_gallery(path).examples["demo"].title == "Demo"
