"""The verification's pure parts: reading a rendered page, planning, keeping results."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from gallery_common.gallery_file import Example
from gallery_common.verifier_contract import RenderError
from gallery_hub.gallery_state import ago, example_state
from gallery_hub.verification_plan import due_examples, fingerprint
from gallery_hub.verification_results import VerificationResult, VerificationResults
from gallery_verifier.browser_render import thumbnail
from gallery_verifier.render_result import first_error, is_error_output, progress_of
from gallery_verifier.server import RenderRequestError, parse_render_request

TRACEBACK = """---------------------------------------------------------------------------
KeyError                                  Traceback (most recent call last)
Cell In[2], line 1
----> 1 print("Sessions:", subjects["sessions"])

KeyError: 'sessions'"""
WARNING = "/tmp/ipykernel_15/34.py:2: UserWarning: careful\n  warnings.warn('careful')"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEMO = Example("demo", "Demo", "", "app.ipynb", "https://x.org", "demo:main", "")


def result(**changes) -> VerificationResult:
    fields = {
        "example": "demo",
        "passed": True,
        "at": (NOW - timedelta(hours=1)).isoformat(),
        "image": "demo:main",
        "image_id": "sha256:1",
        "commit": "c" * 40,
        "fingerprint": fingerprint(DEMO),
        "render_s": 1.5,
        "total_s": 6.0,
    }
    return VerificationResult(**{**fields, **changes})


def test_a_traceback_is_an_error_a_warning_is_not():
    assert is_error_output(TRACEBACK)
    assert not is_error_output(WARNING)
    assert not is_error_output("some progress on stderr")
    assert is_error_output(
        "  Cell In[1], line 1\n    x = (\n        ^\nSyntaxError: incomplete input"
    )
    assert is_error_output("There was an error when executing cell [None]. Please run Voilà ...")


def test_the_first_error_names_the_cell_and_the_exception():
    error = first_error([{"cell": 2, "text": WARNING}, {"cell": 3, "text": TRACEBACK}], cells=4)
    assert (error.kind, error.cell, error.cells, error.exception) == (
        "error-output",
        3,
        4,
        "KeyError",
    )
    assert error.message == "'sessions'"
    assert error.traceback[-1] == "KeyError: 'sessions'"
    assert error.summary() == "KeyError in cell 3 of 4: 'sessions'"
    assert first_error([{"cell": 2, "text": WARNING}], cells=2) is None


def test_a_dead_kernel_and_a_cell_timeout_have_their_own_kinds():
    dead = (
        "Traceback (most recent call last):\n ...\nnbclient.exceptions.DeadKernelError: Kernel died"
    )
    assert first_error([{"cell": 2, "text": dead}], 2).kind == "kernel-died"
    slow = "Cell execution timed out, aborting notebook execution. Please run ..."
    assert first_error([{"cell": 2, "text": slow}], 2).kind == "timeout"


def test_progress_reads_voila_process_calls():
    assert progress_of(["voila_process(1, 4)", "", "voila_process(3, 4)"]) == (3, 4)
    assert progress_of([]) == (None, None)


def test_render_error_round_trips_through_json():
    error = RenderError("error-output", "x", 3, 4, "KeyError", ["a", "b"])
    assert RenderError.from_json(error.to_json()) == error
    assert RenderError.from_json(None) is None


def test_due_examples_and_why():
    other = Example("other", "Other", "", "o.ipynb", "https://x.org", "other:main", "")
    unbuilt = Example("unbuilt", "U", "", "u.ipynb", "https://x.org", "none:v1", "")
    examples = {e.id: e for e in (DEMO, other, unbuilt)}
    ids = {"demo:main": "sha256:1", "other:main": "sha256:9", "none:v1": None}

    def due(results, **kwargs):
        options = {"now": NOW, "every_s": 24 * 3600, "requested": set(), "retry_at": {}}
        built = kwargs.pop("built_at", {})
        found = due_examples(examples, results, kwargs.pop("ids", ids), built, **options | kwargs)
        return [(d.example, d.reason) for d in found]

    assert due({"demo": result()}) == [("other", "never verified")]
    fresh = {"demo": result(), "other": result(example="other", image_id="sha256:9",
                                              fingerprint=fingerprint(other))}  # fmt: skip
    assert due(fresh) == []
    assert due(fresh, ids={**ids, "demo:main": "sha256:2"}) == [("demo", "new image")]
    assert due(fresh, built_at={"demo:main": NOW}) == [("demo", "built again")]
    moved = {**fresh, "demo": result(fingerprint="old")}
    assert due(moved) == [("demo", "gallery entry changed")]
    old = {**fresh, "demo": result(at=(NOW - timedelta(hours=25)).isoformat())}
    assert due(old) == [("demo", "periodic check")]
    assert due(old, every_s=0) == []
    assert due(fresh, requested={"other"}) == [("other", "asked for")]
    assert due({"demo": result()}, retry_at={"other": NOW + timedelta(minutes=1)}) == []


def test_states_with_a_verification():
    assert example_state(DEMO, {"demo:main"}, set(), None) == "ready"
    assert example_state(DEMO, {"demo:main"}, set(), result()) == "verified"
    assert example_state(DEMO, {"demo:main"}, set(), result(passed=False)) == "broken"
    assert example_state(DEMO, set(), {"demo:main"}, result()) == "building"
    assert example_state(DEMO, set(), set(), result()) == "not-built"
    assert ago(NOW - timedelta(hours=3, minutes=5), NOW) == "3 h ago"
    assert ago(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert ago(NOW, NOW) == "just now"


def test_results_survive_a_restart_and_a_failure_keeps_the_passing_thumbnail(tmp_path):
    store = VerificationResults(tmp_path)
    store.record(result(), b"shot-1", b"thumb-1")
    failed = result(passed=False, error=RenderError("error-output", "x", 3, 4, "KeyError"))
    store.record(failed, b"shot-2", b"thumb-2")
    again = VerificationResults(tmp_path)
    assert again.get("demo") == failed
    assert again.screenshot_path("demo").read_bytes() == b"shot-2"
    assert again.thumbnail_path("demo").read_bytes() == b"thumb-1"
    assert again.thumbnail_version("demo") and again.thumbnail_version("other") is None


def test_thumbnail_is_the_top_16_9_scaled_down():
    page = Image.new("RGB", (1280, 2000), "white")
    page.paste((200, 0, 0), (0, 0, 1280, 720))
    out = io.BytesIO()
    page.save(out, "PNG")
    small = Image.open(io.BytesIO(thumbnail(out.getvalue())))
    assert small.size == (640, 360)
    assert small.getpixel((320, 350)) == (200, 0, 0)  # nothing below the first screen


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"page_url": "http://evil.example/", "login_url": "http://hub:8000/x", '
        b'"login_secret": "' + b"s" * 40 + b'", "timeout_s": 10}',
        b'{"page_url": "http://hub:8000/user/x", "login_url": "http://hub:8000/x", '
        b'"login_secret": "short", "timeout_s": 10}',
        b'{"page_url": "http://hub:8000/user/x", "login_url": "http://hub:8000/x", '
        b'"login_secret": "' + b"s" * 40 + b'", "timeout_s": 0}',
    ],
)
def test_the_verifier_takes_only_hub_pages_with_a_secret_and_a_timeout(body):
    with pytest.raises(RenderRequestError):
        parse_render_request(body)


def test_a_good_render_request():
    body = (
        b'{"page_url": "http://hub:8000/user/gallery-verifier/demo/voila/render/app.ipynb", '
        b'"login_url": "http://hub:8000/hub/gallery/verification/login", '
        b'"login_secret": "' + b"s" * 40 + b'", "timeout_s": 300}'
    )
    assert parse_render_request(body)[3] == 300.0


def test_an_example_the_hub_cannot_run_or_still_building_is_not_verified():
    import asyncio
    from types import SimpleNamespace

    from gallery_hub.verification import Verification

    other = Example("other", "Other", "", "o.ipynb", "https://x.org", "other:main", "")
    third = Example("a-third", "Third", "", "t.ipynb", "https://x.org", "third:main", "")
    examples = {"demo": DEMO, "other": other, "a-third": third}  # a-third: still building
    source = SimpleNamespace(current=lambda: SimpleNamespace(examples=examples))
    verification = Verification(
        None,
        source=source,
        results=SimpleNamespace(all=dict),
        hub_api=None,
        worker_url="http://verifier",
        worker_token="t",
        timeout_s=10,
        every_s=3600,
        image_details=lambda names: {name: ("sha256:1", None) for name in names},
        built_at=dict,
        launches_waiting=lambda: 0,
        can_run=lambda example: example.id != "demo",
        building=lambda: {"third:main"},
    )
    verified = []

    async def verify(example, image_id, commit):
        verified.append(example.id)
        raise asyncio.CancelledError  # stop here: only which example was chosen matters

    verification.verify = verify
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(verification.step())
    assert verified == ["other"]
