"""The builder's settings from the environment."""

import pytest

from gallery_builder.builder_settings import BuilderSettings
from gallery_common.settings import SettingError


def test_defaults():
    s = BuilderSettings.from_env({})
    assert (s.concurrency, s.timeout_s) == (1, 3600)
    assert (s.max_memory_gb, s.max_cpu) == (16, 8)
    assert s.allow_private_repositories is True
    assert s.engine == "gallery-docker-api"
    assert s.state_dir.as_posix() == "/srv/builder/state"


def test_the_contract_is_not_a_setting():
    # Port, prefix and token file are fixed by gallery_common.hub_contract.
    s = BuilderSettings.from_env({"GALLERY_BUILDER_PORT": "1", "GALLERY_BUILDER_PREFIX": "/x/"})
    assert not {"port", "service_prefix", "service_token_file"} & set(vars(s))


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"GALLERY_BUILD_CONCURRENCY": "0"}, "GALLERY_BUILD_CONCURRENCY"),
        ({"GALLERY_BUILD_TIMEOUT": "soon"}, "GALLERY_BUILD_TIMEOUT"),
        ({"GALLERY_MAX_MEMORY_GB": "-1"}, "GALLERY_MAX_MEMORY_GB"),
        ({"GALLERY_MAX_CPU": "nan"}, "GALLERY_MAX_CPU"),
        ({"GALLERY_ALLOW_PRIVATE_REPOSITORIES": "sometimes"}, "GALLERY_ALLOW_PRIVATE_REPOSITORIES"),
        ({"GALLERY_REPO2DOCKER_ENGINE": "podman"}, "GALLERY_REPO2DOCKER_ENGINE"),
    ],
)
def test_bad_values_name_the_variable(env, field):
    with pytest.raises(SettingError) as info:
        BuilderSettings.from_env(env)
    assert info.value.name == field
