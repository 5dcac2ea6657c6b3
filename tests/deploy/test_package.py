"""The wheel installs one top-level name, ``atp_bridge``.

``adapters`` is the import name of another PyPI project (AdapterHub's), so the
repository's ``adapters/`` folder installs as ``atp_bridge.adapters``
(``package_dir`` in setup.cfg). Built from a copy of the tracked files, as
pip would build it for a user.
"""
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.serve import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "out"),
                            str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (path,) = (tmp / "out").glob("atp_bridge-*.whl")
    with zipfile.ZipFile(path) as z:
        return z.namelist(), {n: z.read(n).decode() for n in z.namelist() if n.endswith("top_level.txt")}


def test_the_wheel_installs_nothing_but_atp_bridge_at_the_top_level(wheel):
    names, _ = wheel
    tops = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert tops == {"atp_bridge"}


def test_the_adapters_folder_is_atp_bridge_adapters_in_the_wheel(wheel):
    names, top_level = wheel
    assert {"atp_bridge/adapters/__init__.py", "atp_bridge/adapters/base.py",
            "atp_bridge/adapters/csv_file.py", "atp_bridge/adapters/rest.py",
            "atp_bridge/adapters/redis_cache.py", "atp_bridge/data/sample.csv"} <= set(names)
    assert [text.split() for text in top_level.values()] == [["atp_bridge"]]


def test_the_plugin_base_class_is_importable_by_its_documented_name():
    from atp_bridge.adapters import adapter_class
    from atp_bridge.adapters.base import Adapter

    assert adapter_class("csv").__module__ == "atp_bridge.adapters.csv_file"
    assert issubclass(adapter_class("rest"), Adapter)
