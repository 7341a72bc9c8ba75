"""What the hub copies into a warm server's container, and where the server finds it."""

from __future__ import annotations

import io
import tarfile

from gallery_hub import spare_kernel


def test_the_archive_holds_the_module_readable_by_any_user_and_leaves_opt_alone(tmp_path):
    with tarfile.open(fileobj=io.BytesIO(spare_kernel.module_archive())) as tar:
        members = {m.name: m for m in tar.getmembers()}
        tar.extractall(tmp_path, filter="data")
    assert sorted(members) == [
        "opt/neurolang-gallery",
        "opt/neurolang-gallery/python",
        "opt/neurolang-gallery/python/gallery_spare_kernel.py",
    ]
    module = members["opt/neurolang-gallery/python/gallery_spare_kernel.py"]
    assert module.mode == 0o644 and module.uid == 0
    assert all(m.mode == 0o755 for m in members.values() if m.isdir())
    installed = tmp_path / spare_kernel.INSTALL_DIR.lstrip("/") / "gallery_spare_kernel.py"
    assert installed.read_bytes() == spare_kernel.MODULE.read_bytes()
    assert "class SpareKernelManager" in installed.read_text()


def test_the_module_comes_first_on_the_python_path_and_the_images_own_path_stays():
    assert spare_kernel.python_path(["PATH=/usr/bin"]) == spare_kernel.INSTALL_DIR
    assert spare_kernel.python_path(["PYTHONPATH=/a:/b"]) == f"{spare_kernel.INSTALL_DIR}:/a:/b"
    assert spare_kernel.python_path([]) == spare_kernel.INSTALL_DIR


def test_the_server_argument_names_the_class_the_module_defines():
    module, _, cls = spare_kernel.SERVER_ARG.split("=", 1)[1].rpartition(".")
    assert f"{module}.py" == spare_kernel.MODULE.name
    assert f"class {cls}(" in spare_kernel.MODULE.read_text()
