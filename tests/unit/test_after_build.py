"""After a build: the image check always, the data fill when asked (no Docker here)."""

import asyncio
from pathlib import Path

import pytest
import yaml

from gallery_builder.after_build import AfterBuild, annotate, compatibility_view, queue_fill
from gallery_builder.build_request import BuildRequest
from gallery_builder.build_runner import RunOutcome
from gallery_builder.build_store import BuildState
from gallery_builder.data_fill import FillOutcome, FillSettings
from gallery_builder.environments import Conflict
from gallery_builder.image_check import CheckError
from gallery_common.gallery_file import parse_gallery
from gallery_common.image_compatibility import COMPATIBILITY_LABEL, ImageFacts
from gallery_common.image_labels import MARKER_LABEL

from .conftest import FakeImage, FakeImages

REQUEST = BuildRequest(
    repository="https://x.org/n.git", ref="main", name="n", memory_gb=None, cpu=None
)
FACTS = ImageFacts(jupyterhub="6.1.1", singleuser=True, paths={"g/A.py": True})
EXAMPLE = {"title": "t", "repo_url": "https://x.org", "image_url": "a.svg", "path": "g/A.py"}
GALLERY = {
    "images": {"n": {"repo": "https://x.org/n.git", "data": {"path": "g/data"}}},
    "examples": {"a": {**EXAMPLE, "image_name": "n:main"}},
}
SETTINGS = FillSettings(
    project="p",
    network="p-users",
    data_volume="p-gallery-data",
    seal_image="egress:1",
    egress_proxy="http://egress:3128",
    after_build=True,
    timeout_s=60,
)


class Inner:
    def __init__(self, outcome: RunOutcome):
        self.outcome = outcome
        self.runs = 0

    async def run(self, build_id, request, emit):
        self.runs += 1
        emit("built\n")
        return self.outcome


class Checker:
    def __init__(self, facts=FACTS, error=None):
        self.facts, self.error, self.labelled = facts, error, []

    def check(self, image, paths):
        if self.error:
            raise self.error
        self.paths = paths
        return self.facts

    def label(self, image, facts):
        self.labelled.append(image)
        return True


class Filler:
    def __init__(self, outcome: FillOutcome | None = None):
        self.outcome, self.filled = outcome or FillOutcome(1), []

    def fill(self, image, gallery, facts, hub_major, say, cancelled):
        self.filled.append(image)
        say("filling")
        return self.outcome


def make(tmp_path: Path, outcome: RunOutcome, *, fill=SETTINGS, every=False, filler=None):
    path = tmp_path / "gallery.yaml"
    path.write_text(yaml.safe_dump(GALLERY))
    images = FakeImages({"n:main": FakeImage(id="sha256:1", labels={MARKER_LABEL: "true"})})
    after = AfterBuild(
        Inner(outcome),
        images=images,
        gallery_file=path,
        fill=fill,
        fill_every_build=every,
        hub_major=6,
    )
    after.checker = Checker()
    if fill is not None:
        after.filler = filler or Filler()
    return after


def run(after, build_id="b1"):
    lines = []
    outcome = asyncio.run(after.run(build_id, REQUEST, lines.append))
    return outcome, "".join(lines)


BUILT = RunOutcome(BuildState.BUILT, image="n:main", resolved_commit="c" * 40)
REUSED = RunOutcome(BuildState.BUILT, image="n:main", resolved_commit="c" * 40, reused=True)


def test_a_new_image_is_checked_labelled_and_filled(tmp_path):
    after = make(tmp_path, BUILT)
    outcome, log = run(after)
    assert outcome == BUILT
    assert after.checker.paths == ["g/A.py"] and after.checker.labelled == ["n:main"]
    assert after.filler.filled == ["n:main"]
    assert "Image check: the hub can run this image" in log and "filling" in log


def test_a_reused_image_is_checked_but_not_filled_again(tmp_path):
    after = make(tmp_path, REUSED)
    run(after)
    assert after.checker.labelled == ["n:main"] and after.filler.filled == []


def test_fill_data_fills_a_reuse_too_and_its_failure_fails_the_build(tmp_path):
    after = make(tmp_path, REUSED, every=True, filler=Filler(FillOutcome(1, ("a: exit 1",))))
    outcome, _ = run(after)
    assert outcome.state == BuildState.FAILED and "a: exit 1" in outcome.reason


def test_a_failed_fill_after_a_build_leaves_the_image_built_with_the_reason(tmp_path):
    after = make(tmp_path, BUILT, filler=Filler(FillOutcome(1, ("a: exit 1",))))
    outcome, _ = run(after)
    assert outcome.state == BuildState.BUILT and outcome.reason.startswith("built; data fill")


def test_a_failed_build_is_neither_checked_nor_filled(tmp_path):
    failed = RunOutcome(BuildState.FAILED, image="n:main", reason="repo2docker exited with 1")
    after = make(tmp_path, failed)
    assert run(after)[0] == failed
    assert after.checker.labelled == [] and after.filler.filled == []


def test_a_check_that_cannot_run_is_logged_and_the_build_stands(tmp_path):
    after = make(tmp_path, BUILT)
    after.checker = Checker(error=CheckError("the check exited with 127: sh: not found"))
    outcome, log = run(after)
    assert outcome == BUILT and "Image check failed: the check exited with 127" in log


def test_without_fill_settings_only_the_check_runs(tmp_path):
    after = make(tmp_path, BUILT, fill=None)
    outcome, log = run(after)
    assert outcome == BUILT and after.filler is None and "Data fill" not in log


def test_a_fill_job_fills_the_existing_image_without_building(tmp_path):
    after = make(tmp_path, BUILT)
    after.fill_only("job", "n:main")
    outcome, log = run(after, "job")
    assert after.inner.runs == 0 and after.filler.filled == ["n:main"]
    assert outcome.state == BuildState.BUILT and outcome.reused and outcome.image == "n:main"
    assert "Filling the data of n:main (no build)" in log


class Environments:
    def __init__(self, store, images, queue):
        self.store, self.images, self.queue = store, images, queue

    async def get(self, build_id):
        return self.store.get(build_id)


class Queue:
    def __init__(self, store):
        self.store = store

    def enqueue(self, request):
        return self.store.create(
            name=request.name,
            image="n:latest",
            repository=request.repository,
            ref=request.ref,
            memory_gb=None,
            cpu=None,
        )


def test_fill_jobs_are_refused_with_the_reason_and_queued_otherwise(tmp_path, store):
    after = make(tmp_path, BUILT)
    record = store.create(
        name="n",
        image="n:main",
        repository="https://x.org/n.git",
        ref=None,
        memory_gb=None,
        cpu=None,
    )
    store.set_state(record.id, BuildState.BUILDING)
    environments = Environments(store, after.images, Queue(store))
    with pytest.raises(Conflict, match="queued or running"):
        asyncio.run(queue_fill(environments, after, record.id))
    store.set_state(record.id, BuildState.BUILT)
    job = asyncio.run(queue_fill(environments, after, record.id))
    assert job.image == "n:main" and after._fill_only == {job.id: "n:main"}

    other = store.create(
        name="m",
        image="m:main",
        repository="https://x.org/m.git",
        ref=None,
        memory_gb=None,
        cpu=None,
    )
    store.set_state(other.id, BuildState.BUILDING)
    store.set_state(other.id, BuildState.BUILT)
    after.images.images["m:main"] = FakeImage(id="sha256:2", labels={})
    with pytest.raises(Conflict, match="no `data:` folder"):
        asyncio.run(queue_fill(environments, after, other.id))
    del after.images.images["m:main"]
    with pytest.raises(Conflict, match="is not built"):
        asyncio.run(queue_fill(environments, after, other.id))


def test_the_page_sees_problems_judged_against_the_current_gallery():
    gallery = parse_gallery(GALLERY)
    old = ImageFacts(jupyterhub="1.4.0", singleuser=True, paths={"g/A.py": False})
    view = compatibility_view(old, gallery, "n:main", 6)
    assert view["checked"] and len(view["problems"]) == 2
    assert compatibility_view(None, gallery, "n:main", 6) == {"checked": False, "problems": []}


def test_the_list_carries_what_the_check_found(tmp_path, store):
    after = make(tmp_path, BUILT)
    after.images.inspect = lambda image: {
        "Config": {"Labels": {COMPATIBILITY_LABEL: ImageFacts("1.4.0", True).to_label()}}
    }
    record = store.create(
        name="n",
        image="n:main",
        repository="https://x.org/n.git",
        ref=None,
        memory_gb=None,
        cpu=None,
    )
    (listed,) = asyncio.run(annotate([record.to_json()], after))
    assert listed["id"] == record.id and listed["check"]["checked"] is True
    assert "jupyterhub 1.4.0" in listed["check"]["problems"][0]
    assert asyncio.run(annotate([record.to_json()], None)) == [record.to_json()]


def test_a_check_made_inside_the_build_is_logged_and_not_run_again(tmp_path):
    checked = RunOutcome(
        BuildState.BUILT,
        image="n:main",
        resolved_commit="c" * 40,
        facts=ImageFacts(
            jupyterhub="1.4.0", singleuser=True, paths={"g/A.py": False}, workdir="/w"
        ),
    )
    after = make(tmp_path, checked)
    outcome, log = run(after)
    assert (
        outcome == checked and after.checker.labelled == [] and not hasattr(after.checker, "paths")
    )
    assert (
        "Image check: INCOMPATIBLE: the image has jupyterhub 1.4.0, the hub runs JupyterHub 6"
        in log
    )
    assert "Image check: INCOMPATIBLE: g/A.py is not in the image (in /w)" in log
    assert f"Image check: recorded on n:main (label {COMPATIBILITY_LABEL})" in log
    # ... and a check that could not run inside the build says why, without a second try.
    failed = RunOutcome(BuildState.BUILT, image="n:main", check_error="the check exited with 127")
    after = make(tmp_path, failed)
    outcome, log = run(after)
    assert "Image check failed: the check exited with 127" in log and after.checker.labelled == []
    assert after.filler.filled == ["n:main"]  # the fill goes on without facts, as before


def test_a_build_runner_inside_is_asked_to_check_before_its_last_step(tmp_path):
    from gallery_builder.build_runner import BuildRunner

    path = tmp_path / "gallery.yaml"
    path.write_text(yaml.safe_dump(GALLERY))
    runner = BuildRunner(images=FakeImages({}))
    after = AfterBuild(runner, images=FakeImages({}), gallery_file=path, fill=SETTINGS)
    assert runner.in_build_check is not None
    assert list(runner.in_build_check.paths("n:main")) == ["g/A.py"]
    assert runner.in_build_check.name_prefix == "p" and after.inner is runner
