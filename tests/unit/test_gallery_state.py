"""An example is ready when its image is built, building while the builder works on it."""

from gallery_common.gallery_file import Example
from gallery_hub.gallery_state import CachedValue, example_state

EXAMPLE = Example("demo", "Demo", "", "app.ipynb", "https://x.org", "demo:main", "d.svg")


def test_states():
    assert example_state(EXAMPLE, {"demo:main"}, set()) == "ready"
    assert example_state(EXAMPLE, set(), {"demo:main"}) == "building"
    assert example_state(EXAMPLE, {"other:v1"}, set()) == "not-built"


def test_cached_value_keeps_the_last_good_value_when_the_source_fails():
    answers = [{"a"}, RuntimeError("down")]

    def fetch():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache = CachedValue(fetch, max_age_s=0)
    assert cache.get() == {"a"}
    assert cache.get() == {"a"}


def test_a_failing_partial_is_logged_not_raised():
    from functools import partial

    def fetch(source):
        raise RuntimeError(f"{source} is down")

    assert CachedValue(partial(fetch, "builder"), max_age_s=0, empty=list).get() == []


def test_a_failing_source_given_as_a_partial_is_named_in_the_log(caplog):
    from functools import partial

    def builds_in_progress(url):
        raise OSError("builder down")

    cache = CachedValue(partial(builds_in_progress, "http://builder"), max_age_s=0)
    assert cache.get() == set()
    assert "builds_in_progress failed: builder down" in caplog.text


def test_many_readers_of_a_stale_value_wait_for_one_fetch():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    fetches = []
    release = threading.Event()

    def fetch():
        fetches.append(1)
        release.wait(5)
        return {"image"}

    cache = CachedValue(fetch, max_age_s=60)
    with ThreadPoolExecutor(20) as threads:
        readers = [threads.submit(cache.get) for _ in range(20)]
        release.set()
        values = [reader.result(timeout=10) for reader in readers]
    assert values == [{"image"}] * 20
    assert len(fetches) == 1
