"""The hub's settings from the environment (the keys of .env.example)."""

from pathlib import Path

import pytest

from gallery_common.settings import SettingError
from gallery_hub.hub_settings import HubSettings


def test_defaults():
    s = HubSettings.from_env({})
    assert s.admin_user == "admin"
    assert s.admin_password == ""
    assert s.state_dir == Path("/srv/jupyterhub/state")
    assert s.default_mem_limit == 2 * 1024**3
    assert s.default_cpu_limit == 1.0
    assert s.data_mount_path == "/home/jovyan/gallery/data"
    assert s.data_read_only is True


def test_values_from_env():
    s = HubSettings.from_env(
        {
            "GALLERY_ADMIN_USER": "alice",
            "GALLERY_ADMIN_PASSWORD": "long-enough-password",
            "GALLERY_DEFAULT_MEM_LIMIT": "512M",
            "GALLERY_DEFAULT_CPU_LIMIT": "0.5",
            "GALLERY_DATA_READ_ONLY": "false",
            "GALLERY_USER_NETWORK": "proj-users",
            "GALLERY_DATA_VOLUME": "proj-gallery-data",
        }
    )
    assert (s.admin_user, s.admin_password) == ("alice", "long-enough-password")
    assert s.default_mem_limit == 512 * 1024**2
    assert s.default_cpu_limit == 0.5
    assert s.data_read_only is False
    assert (s.user_network, s.data_volume) == ("proj-users", "proj-gallery-data")


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"GALLERY_ADMIN_USER": "Admin!"}, "GALLERY_ADMIN_USER"),
        ({"GALLERY_ADMIN_PASSWORD": "short"}, "GALLERY_ADMIN_PASSWORD"),
        ({"GALLERY_DEFAULT_MEM_LIMIT": "lots"}, "GALLERY_DEFAULT_MEM_LIMIT"),
        ({"GALLERY_DEFAULT_CPU_LIMIT": "0"}, "GALLERY_DEFAULT_CPU_LIMIT"),
        ({"GALLERY_DATA_READ_ONLY": "perhaps"}, "GALLERY_DATA_READ_ONLY"),
        ({"GALLERY_DATA_MOUNT_PATH": "relative/path"}, "GALLERY_DATA_MOUNT_PATH"),
        ({"GALLERY_USER_NETWORK": "-bad name"}, "GALLERY_USER_NETWORK"),
    ],
)
def test_bad_values_name_the_variable(env, field):
    with pytest.raises(SettingError) as info:
        HubSettings.from_env(env)
    assert info.value.name == field
    assert str(info.value).startswith(f"{field}: ")


def test_containment_settings():
    s = HubSettings.from_env({})
    assert (s.user_egress, s.user_tmp_size, s.user_log_max_size) == ("proxy", "256m", "10m")
    assert (s.user_disk_quota, s.min_free_disk_gb, s.https) == ("10G", 5.0, False)
    s = HubSettings.from_env(
        {
            "GALLERY_USER_EGRESS": "none",
            "GALLERY_USER_DISK_QUOTA": "off",
            "GALLERY_MIN_FREE_DISK_GB": "0",
            "GALLERY_TLS_CERT_FILE": "./certs/site.pem",
        }
    )
    assert (s.user_egress, s.user_disk_quota, s.min_free_disk_gb) == ("none", "", 0.0)
    assert s.https is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GALLERY_USER_EGRESS", "open"),
        ("GALLERY_USER_TMP_SIZE", "big"),
        ("GALLERY_USER_LOG_MAX_SIZE", "-1"),
        ("GALLERY_USER_DISK_QUOTA", "lots"),
        ("GALLERY_MIN_FREE_DISK_GB", "-2"),
    ],
)
def test_bad_containment_settings_name_the_variable(name, value):
    with pytest.raises(SettingError) as info:
        HubSettings.from_env({name: value})
    assert info.value.name == name
