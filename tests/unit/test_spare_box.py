"""The spare build box: made ahead, taken by one build when it still fits, made again after."""

from __future__ import annotations

import threading
from typing import Any

from docker.errors import APIError

from gallery_builder.build_box import BOX_LABEL, BoxSettings
from gallery_builder.spare_box import SpareBoxes
from tests.unit.test_build_box import SETTINGS, FakeAPI


class SpareAPI(FakeAPI):
    """FakeAPI whose containers have ids of their own and a state to inspect."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.running: dict[str, bool] = {}

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.created.append(kwargs)
        container = f"box-{len(self.created)}"
        self.running[container] = True
        return {"Id": container}

    def inspect_container(self, container: str) -> dict[str, Any]:
        return {"State": {"Running": self.running.get(container, False)}}


def test_a_build_takes_the_spare_and_the_next_one_is_made_after() -> None:
    api = SpareAPI()
    boxes = SpareBoxes(lambda: api, SETTINGS)
    boxes.make_spare()
    boxes.make_spare()  # there is one already: no second
    assert len(api.created) == 1
    spare = api.created[0]
    assert spare["labels"][BOX_LABEL] == "spare"
    assert spare["name"].startswith("p-buildbox-spare-")
    # The same sandbox as a build's own: firewall, capabilities, network.
    assert spare["command"] == api.created[0]["command"]
    assert spare["host_config"]["cap_drop"] == ["ALL"]
    assert "192.168.80.2/32" in spare["environment"]["RULES4"]

    box = boxes.open("0123456789abcdef")
    assert box.container_id == "box-1" and box.name == spare["name"]
    assert box.build_args["HTTP_PROXY"] == "http://192.168.80.2:3128"
    # One box, one build: the next build without a new spare makes its own.
    second = boxes.open("fedcba9876543210")
    assert second.container_id == "box-2" and second.name == "p-buildbox-fedcba987654"
    boxes.make_spare()
    assert boxes.open("b3").container_id == "box-3"


def test_a_spare_that_no_longer_fits_is_removed_and_the_build_makes_its_own() -> None:
    api = SpareAPI()
    boxes = SpareBoxes(lambda: api, SETTINGS)
    boxes.make_spare()
    api.running["box-1"] = False  # the sandbox stopped
    assert boxes.open("b1").container_id == "box-2"
    assert api.removed == ["box-1"]
    # The egress proxy moved: the spare's firewall lets out the old address only.
    boxes.make_spare()
    api.proxy = "192.168.80.9"
    box = boxes.open("b2")
    assert box.container_id == "box-4" and box.proxy == "192.168.80.9"
    assert api.removed == ["box-1", "box-3"]


def test_the_spare_goes_when_the_builder_stops_and_none_is_made_after() -> None:
    api = SpareAPI()
    boxes = SpareBoxes(lambda: api, SETTINGS)
    boxes.make_spare()
    boxes.remove_spare()
    assert api.removed == ["box-1"]
    boxes.make_spare()
    assert len(api.created) == 1
    boxes.remove_spare()  # twice is fine
    assert api.removed == ["box-1"]


def spare_being_made(api: SpareAPI, boxes: SpareBoxes) -> tuple[threading.Thread, threading.Event]:
    """A spare half made: its sandbox's start waits until the event is set."""
    starting, go_on = threading.Event(), threading.Event()
    start = api.start

    def slow_start(container: str) -> None:
        starting.set()
        go_on.wait(5)
        start(container)

    api.start = slow_start  # type: ignore[method-assign]
    maker = threading.Thread(target=boxes.make_spare)
    maker.start()
    assert starting.wait(5)
    return maker, go_on


def test_a_spare_made_while_the_builder_stops_is_removed_at_once() -> None:
    api = SpareAPI()
    boxes = SpareBoxes(lambda: api, SETTINGS)
    maker, go_on = spare_being_made(api, boxes)
    boxes.make_spare()  # one is being made: not a second one
    boxes.remove_spare()
    go_on.set()
    maker.join(5)
    assert len(api.created) == 1 and api.removed == ["box-1"]


def test_a_spare_that_cannot_be_made_leaves_the_build_to_make_its_own() -> None:
    api = SpareAPI(proxy=None)
    boxes = SpareBoxes(lambda: api, SETTINGS)
    boxes.make_spare()  # logged, not raised
    assert api.created == []

    class Failing(SpareAPI):
        def inspect_container(self, container: str) -> dict[str, Any]:
            raise APIError("the daemon is busy")

    api = Failing()
    boxes = SpareBoxes(lambda: api, SETTINGS)
    boxes.make_spare()
    assert boxes.open("b1").container_id == "box-2"


def test_without_a_builds_network_there_is_no_spare() -> None:
    api = SpareAPI()
    boxes = SpareBoxes(lambda: api, BoxSettings(memory_gb=2, cpu=1))
    boxes.make_spare()
    assert api.created == []
    assert boxes.open("b1").container_id is None


def test_a_build_that_comes_while_the_spare_is_made_waits_for_it() -> None:
    api = SpareAPI()
    boxes = SpareBoxes(lambda: api, SETTINGS)
    maker, go_on = spare_being_made(api, boxes)
    taken: list[Any] = []
    opener = threading.Thread(target=lambda: taken.append(boxes.open("b1")))
    opener.start()
    opener.join(0.2)
    assert opener.is_alive() and taken == []  # waiting, not making a box of its own
    go_on.set()
    opener.join(5)
    maker.join(5)
    assert [box.container_id for box in taken] == ["box-1"] and len(api.created) == 1
