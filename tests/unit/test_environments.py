"""The hub's view of built environments: listing, limits, the spawn form."""

from gallery_common.image_compatibility import COMPATIBILITY_LABEL, ImageFacts
from gallery_common.image_labels import make_labels
from gallery_hub.environments import (
    Limits,
    environments_from_images,
    limits_for,
    render_options_form,
)

DEFAULT = Limits(mem_bytes=2 * 1024**3, cpu=1.0)


def labels(**overrides):
    fields = {
        "repository": "https://git.example.org/lab/demo.git",
        "ref": "main",
        "commit": "a" * 40,
        "display_name": "Demo",
        **overrides,
    }
    return make_labels(**fields)


def test_only_gallery_images_with_real_tags_are_listed():
    images = [
        {"RepoTags": ["demo:main"], "Labels": labels()},
        {"RepoTags": ["python:3.12-slim"], "Labels": {"maintainer": "x"}},
        {"RepoTags": ["<none>:<none>"], "Labels": labels()},
        {"RepoTags": ["demo:gallery-build-abc"], "Labels": labels()},
        {"RepoTags": ["alpha:v1"], "Labels": labels(display_name="Alpha")},
        {"RepoTags": None, "Labels": None},
    ]
    assert [e.image for e in environments_from_images(images)] == ["alpha:v1", "demo:main"]


def test_limits_come_from_labels_or_defaults():
    own = limits_for(
        environments_from_images(
            [{"RepoTags": ["d:m"], "Labels": labels(memory_limit_gb=0.5, cpu_limit=0.25)}]
        )[0].labels,
        DEFAULT,
    )
    assert own == Limits(mem_bytes=512 * 1024**2, cpu=0.25)
    plain = environments_from_images([{"RepoTags": ["d:m"], "Labels": labels()}])[0].labels
    assert limits_for(plain, DEFAULT) == DEFAULT
    assert limits_for(None, DEFAULT) == DEFAULT


def test_labels_never_raise_limits_above_the_configured_maxima():
    greedy = environments_from_images(
        [{"RepoTags": ["d:m"], "Labels": labels(memory_limit_gb=512, cpu_limit=64)}]
    )[0].labels
    maximum = Limits(mem_bytes=16 * 1024**3, cpu=8.0)
    assert limits_for(greedy, DEFAULT, maximum) == maximum
    modest = environments_from_images(
        [{"RepoTags": ["d:m"], "Labels": labels(memory_limit_gb=1, cpu_limit=0.5)}]
    )[0].labels
    assert limits_for(modest, DEFAULT, maximum) == Limits(mem_bytes=1024**3, cpu=0.5)


def test_form_lists_every_environment_with_its_details():
    envs = environments_from_images(
        [
            {"RepoTags": ["demo:main"], "Labels": labels(memory_limit_gb=1, cpu_limit=0.5)},
            {"RepoTags": ["other:v2"], "Labels": labels(display_name="Other", ref="v2")},
        ]
    )
    html = render_options_form(envs, is_admin=False, default=DEFAULT)
    assert html.count('name="image"') == 2
    assert 'value="demo:main"' in html and 'value="other:v2"' in html
    assert "https://git.example.org/lab/demo.git" in html
    assert "aaaaaaa" in html and "memory 1 GB" in html and "0.5 CPU" in html
    assert " checked" not in html  # two choices: the user picks


def test_a_single_environment_is_preselected():
    envs = environments_from_images([{"RepoTags": ["demo:main"], "Labels": labels()}])
    assert 'value="demo:main" required checked' in render_options_form(
        envs, is_admin=False, default=DEFAULT
    )


def test_no_environment_says_so_and_links_admins_to_the_page():
    admin = render_options_form([], is_admin=True, default=DEFAULT)
    user = render_options_form([], is_admin=False, default=DEFAULT)
    assert "No environment has been built yet" in admin
    assert 'href="/services/environments/"' in admin
    assert "/services/environments/" not in user


def test_labels_are_escaped_in_the_form():
    envs = environments_from_images(
        [{"RepoTags": ["demo:main"], "Labels": labels(display_name="<script>x</script>")}]
    )
    html = render_options_form(envs, is_admin=False, default=DEFAULT)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_an_environment_the_hub_cannot_run_is_marked_and_cannot_be_chosen():
    old = ImageFacts(jupyterhub="1.4.0", singleuser=True).to_label()
    good = ImageFacts(jupyterhub="6.1.1", singleuser=True).to_label()
    envs = environments_from_images(
        [
            {"RepoTags": ["old:v1"], "Labels": {**labels(), COMPATIBILITY_LABEL: old}},
            {"RepoTags": ["new:v1"], "Labels": {**labels(), COMPATIBILITY_LABEL: good}},
        ]
    )
    html = render_options_form(envs, is_admin=True, default=DEFAULT, hub_major=6)
    assert 'value="old:v1" required disabled>' in html
    assert "the image has jupyterhub 1.4.0, the hub runs JupyterHub 6" in html
    assert 'value="new:v1" required checked>' in html  # the one that can run
    assert html.count("incompatible-reason") == 1
