"""The admin password: hashed, generated once, and only its hash kept on disk."""

import stat

from gallery_hub.admin_password import hash_password, load_admin_password, verify_password


def test_hash_verifies_only_the_right_password():
    stored = hash_password("correct horse battery", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)


def test_same_password_gets_different_salts():
    assert hash_password("pw-pw-pw-pw-pw", iterations=1000) != hash_password(
        "pw-pw-pw-pw-pw", iterations=1000
    )


def test_malformed_hash_never_verifies():
    for bad in ["", "plain", "md5$1$a$b", "pbkdf2_sha256$x$y$z", "pbkdf2_sha256$10$!!$!!"]:
        assert not verify_password("anything", bad)


def test_configured_password_is_not_written(tmp_path):
    result = load_admin_password(tmp_path, "a-configured-password")
    assert result.generated_password is None
    assert verify_password("a-configured-password", result.password_hash)
    assert list(tmp_path.iterdir()) == []


def test_generated_once_then_kept(tmp_path):
    first = load_admin_password(tmp_path, "")
    assert first.generated_password and len(first.generated_password) >= 20
    assert verify_password(first.generated_password, first.password_hash)
    hash_file = tmp_path / "admin-password.hash"
    assert stat.S_IMODE(hash_file.stat().st_mode) == 0o600
    assert first.generated_password not in hash_file.read_text()

    second = load_admin_password(tmp_path, "")
    assert second.generated_password is None  # printed on the first start only
    assert second.password_hash == first.password_hash
