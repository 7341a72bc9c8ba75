"""The builder's health report names the failing check."""

from gallery_builder.health import check_docker, check_state_dir, report


def test_healthy(tmp_path):
    status, body = report([check_state_dir(tmp_path / "s"), check_docker(lambda: True)])
    assert status == 200
    assert body["ok"] is True
    assert set(body["checks"]) == {"state_dir", "docker"}


def test_docker_unreachable_is_503():
    def ping():
        raise ConnectionError("no socket")

    status, body = report([check_docker(ping)])
    assert status == 503
    assert body["checks"]["docker"] == {
        "ok": False,
        "detail": "Docker engine unreachable: ConnectionError",
    }


def test_unwritable_state_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = check_state_dir(blocker / "sub")
    assert result.ok is False
    assert "not writable" in result.detail
