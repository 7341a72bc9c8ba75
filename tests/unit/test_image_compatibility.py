"""The image check's facts and the verdicts both sides draw from them."""

import json
import os
import subprocess
import sys
from pathlib import Path

from gallery_builder.image_check import describe, gallery_paths, parse_check_output
from gallery_builder.image_probe import CHECK_COMMAND, CHECK_SCRIPT, check_data, slow_import_of
from gallery_common.gallery_file import parse_gallery
from gallery_common.image_compatibility import (
    COMPATIBILITY_LABEL,
    ImageFacts,
    example_problems,
    facts_from_labels,
    image_problems,
    major_version,
    path_problems,
)

GOOD = ImageFacts(
    jupyterhub="6.1.1",
    singleuser=True,
    voila="0.5.13",
    jupytext="1.19.6",
    python="3.11.2",
    workdir="/home/jovyan",
    paths={"gallery/A.py": True, "gallery/B.py": False},
    checked_at="2026-01-01T00:00:00Z",
)
OLD = ImageFacts(jupyterhub="1.4.0", singleuser=True)


def test_facts_go_through_a_label_and_back():
    label = {COMPATIBILITY_LABEL: GOOD.to_label()}
    assert facts_from_labels(label) == GOOD
    assert facts_from_labels({}) is None
    assert facts_from_labels({COMPATIBILITY_LABEL: "not json"}) is None
    assert facts_from_labels({COMPATIBILITY_LABEL: "[1, 2]"}) is None


def test_only_the_time_of_the_check_may_differ_for_the_same_facts():
    later = ImageFacts(**{**GOOD.__dict__, "checked_at": "2027-01-01T00:00:00Z"})
    assert GOOD.same_as(later) and not GOOD.same_as(OLD) and not GOOD.same_as(None)


def test_another_jupyterhub_major_version_is_a_problem_with_the_reason():
    assert image_problems(GOOD, 6) == []
    (problem,) = image_problems(OLD, 6)
    assert problem.startswith("the image has jupyterhub 1.4.0, the hub runs JupyterHub 6")
    assert "pin jupyterhub==6.*" in problem
    missing = image_problems(ImageFacts(jupyterhub=None, singleuser=False), 6)
    assert missing == [
        "jupyterhub is not installed in the image",
        "the image has no jupyterhub-singleuser command",
    ]
    assert image_problems(None, 6) == []  # never checked: not judged
    assert major_version("10.0b1") == 10 and major_version("x") is None


def test_a_missing_example_file_is_a_problem_of_that_example_only():
    assert path_problems(GOOD, "gallery/A.py") == []
    assert path_problems(GOOD, "gallery/B.py") == [
        "gallery/B.py is not in the image (in /home/jovyan)"
    ]
    assert path_problems(GOOD, "gallery/unchecked.py") == []
    assert example_problems(OLD, 6, "app.ipynb") == image_problems(OLD, 6)


def test_the_check_output_is_read_from_its_marker_line():
    data = {"jupyterhub": "6.1.1", "singleuser": True, "paths": {"a.py": True}, "workdir": "/w"}
    text = "entrypoint noise\nGALLERY-IMAGE-CHECK " + json.dumps(data) + "\n"
    facts = parse_check_output(text)
    assert facts.jupyterhub == "6.1.1" and facts.paths == {"a.py": True} and facts.checked_at
    assert parse_check_output("no marker") is None
    assert parse_check_output("GALLERY-IMAGE-CHECK {broken") is None


def test_the_log_says_what_was_found_and_why_it_cannot_run():
    lines = describe(GOOD, 6)
    assert lines[0].startswith("Image check: jupyterhub 6.1.1, jupyterhub-singleuser present")
    assert "Image check: gallery/B.py MISSING" in lines
    assert lines[-1] == (
        "Image check: INCOMPATIBLE: gallery/B.py is not in the image (in /home/jovyan)"
    )
    no_jupytext = ImageFacts(jupyterhub="6.0", singleuser=True, paths={"x.py": True})
    assert any("without jupytext" in line for line in describe(no_jupytext, 6))
    assert describe(no_jupytext, 6)[-1] == "Image check: the hub can run this image"


def test_the_paths_checked_are_those_of_the_examples_of_the_image():
    example = {"title": "t", "repo_url": "https://x.org", "image_url": "a.svg"}
    gallery = parse_gallery(
        {
            "examples": {
                "a": {**example, "path": "g/A.py", "image_name": "n:main"},
                "b": {**example, "path": "g/B.py", "image_name": "n:main"},
                "c": {**example, "path": "other.py", "image_name": "m:main"},
            }
        }
    )
    assert gallery_paths(gallery, "n:main") == ["g/A.py", "g/B.py"]
    assert gallery_paths(None, "n:main") == []


def test_the_check_script_finds_the_slow_import_and_who_may_remove_it(tmp_path):
    """CHECK_SCRIPT as the container runs it, with this interpreter and a made-up site dir."""
    site = tmp_path / "lib" / "site-packages"
    (site / "rfc3987_syntax").mkdir(parents=True)
    (site / "rfc3987_syntax-1.1.0.dist-info").mkdir()
    (site / "rfc3987_syntax.txt").write_text("a file, not the package")
    # Versions: from a .dist-info folder's METADATA (not its name), or (an .egg-info) from
    # importlib.metadata.
    (site / "voila-0.5.13.dist-info").mkdir()
    (site / "voila-0.5.13.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: voila\nVersion: 0.4.0\n\nVersion: not a header\n"
    )
    (site / "jupytext-1.2.3-py3.11.egg-info").write_text(
        "Metadata-Version: 1.1\nName: jupytext\nVersion: 1.2.3\n"
    )
    (tmp_path / "app.ipynb").write_text("{}")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(site),
        "GALLERY_CHECK_SCRIPT": CHECK_SCRIPT,
        "GALLERY_CHECK_PATHS": json.dumps(["app.ipynb", "missing.py"]),
        "GALLERY_CHECK_USER": str(os.getuid()),
    }
    done = subprocess.run(
        CHECK_COMMAND, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    data = check_data(done.stdout)
    assert data is not None, done
    assert data["paths"] == {"app.ipynb": True, "missing.py": False}
    assert (data["voila"], data["jupytext"]) == ("0.4.0", "1.2.3")
    slow = slow_import_of(data)
    assert slow is not None and slow.user_can_remove
    # (the interpreter's own site-packages may have it too)
    mine = {str(site / "rfc3987_syntax"), str(site / "rfc3987_syntax-1.1.0.dist-info")}
    assert mine <= set(slow.paths) and not any(p.endswith(".txt") for p in slow.paths)
    # Another user of the image: it may not remove it by itself.
    env["GALLERY_CHECK_USER"] = str(os.getuid() + 1)
    done = subprocess.run(
        CHECK_COMMAND, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    slow = slow_import_of(check_data(done.stdout))
    assert slow is not None and slow.paths and not slow.user_can_remove


def test_only_plain_site_packages_folders_of_the_slow_import_are_believed():
    def answer(*paths):
        found = {"paths": list(paths), "removable": True, "uid": 1, "user_uid": 1}
        return slow_import_of({"slow_import": found})

    site = "/srv/conda/envs/notebook/lib/python3.11/site-packages"
    assert answer().paths == ()
    assert answer(f"{site}/rfc3987_syntax").paths == (f"{site}/rfc3987_syntax",)
    assert answer("/etc/rfc3987_syntax") is None  # not in a site-packages
    assert answer(f"{site}/../../../../bin/rfc3987_syntax") is None
    assert answer(f"{site}/rfc3987_syntax' '/") is None
    assert answer(f"{site}/requests") is None
    assert slow_import_of({"slow_import": {"paths": "x"}}) is None
    assert slow_import_of({}) is None
