"""The CLI: serve fails fast on a broken config, with the check-config message."""
import subprocess

from tests.conftest import atp_bridge_cmd, subprocess_env, write_yaml


def test_serve_with_a_broken_config_exits_1_with_the_problems_and_no_traceback(tmp_path, test_adapter_entry_points):
    path = write_yaml(tmp_path / "broken.yaml", {"merge": "avg", "adapters": [{"name": "x", "type": "nope"}]})
    env = subprocess_env(test_adapter_entry_points)
    served = subprocess.run(atp_bridge_cmd("serve", "--config", str(path), "--bind", "127.0.0.1:0"),
                            env=env, capture_output=True, text=True, timeout=30)
    checked = subprocess.run(atp_bridge_cmd("check-config", "--config", str(path)),
                             env=env, capture_output=True, text=True, timeout=30)
    assert served.returncode == 1 and checked.returncode == 1
    assert "Traceback" not in served.stderr
    assert f"{path}: merge: Must be one of: first, sum, min, max." in served.stderr
    assert "unknown adapter type 'nope'" in served.stderr
    assert served.stderr == checked.stderr  # the same message as check-config
    assert served.stdout == ""
