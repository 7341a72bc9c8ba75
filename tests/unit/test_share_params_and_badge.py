"""Share links' parameters and the state badge."""

from __future__ import annotations

import pytest

from gallery_hub.badge import badge_svg
from gallery_hub.share_params import ParamError, form_fields, query_string, share_params


def test_share_params_are_taken_from_p_dot_arguments_only():
    params = share_params({"p.query": [b"left amygdala"], "p.n": [b"3"], "other": [b"x"]})
    assert params == [("query", "left amygdala"), ("n", "3")]
    assert query_string(params) == "query=left+amygdala&n=3"
    assert form_fields(params) == [("p.query", "left amygdala"), ("p.n", "3")]


@pytest.mark.parametrize(
    "arguments",
    [
        {"p.query": [b"x" * 201]},
        {"p.bad name": [b"x"]},
        {"p.": [b"x"]},
        {"p.q": [b"line\nbreak"]},
        {f"p.k{i}": [b"v"] for i in range(11)},
    ],
)
def test_bad_share_params_are_refused(arguments):
    with pytest.raises(ParamError):
        share_params(arguments)


def test_badge_escapes_and_colors_by_state():
    svg = badge_svg("gallery", "<verified>", "verified")
    assert svg.startswith("<svg") and "&lt;verified&gt;" in svg and "#2e9f45" in svg
    assert "#6e7781" in badge_svg("gallery", "?", "unknown-state")
