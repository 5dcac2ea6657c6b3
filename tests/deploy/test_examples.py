"""deploy/examples: every example passes `atp-bridge check-config` with its
variables set, names each unset one exactly once without them, and matches the
README's table of variables. That every example serves real answers is
tests/deploy/test_examples_serve.py; the demo ERP is tested here.
"""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from atp_bridge.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLES = sorted(p for p in (DEPLOY / "examples").iterdir() if p.is_dir())
SECRETS = {"NEWSTORE_API_KEY": "example-newstore-key-0123456789", "ERP_TOKEN": "example-erp-token",
           "ERP_PASSWORD": "example-erp-password",
           # the vendor examples' own (their defaults, where they have one, are left to apply)
           "D365_IV_URL": "https://inventoryservice.example.com",
           "D365_ENVIRONMENT_ID": "9a1b2c3d-4e5f-4a6b-8c7d-0123456789ab", "D365_ORGANIZATION_ID": "usmf",
           "AZURE_TENANT_ID": "11111111-2222-3333-4444-555555555555", "AZURE_CLIENT_ID": "example-client",
           "AZURE_CLIENT_SECRET": "example-azure-secret",
           "NETSUITE_ACCOUNT_ID": "1234567", "NETSUITE_CLIENT_ID": "ns-client-0001",
           "NETSUITE_CERTIFICATE_ID": "cert-rsa",
           "ERPNEXT_API_KEY": "example-erpnext-key", "ERPNEXT_API_SECRET": "example-erpnext-secret",
           "CT_CLIENT_ID": "example-ct-client", "CT_CLIENT_SECRET": "example-ct-secret",
           "SALESFORCE_URL": "https://example.my.salesforce.com", "SALESFORCE_CLIENT_ID": "example-sf-client",
           "SALESFORCE_CLIENT_SECRET": "example-sf-secret",
           "SHOPIFY_URL": "https://example.myshopify.com", "SHOPIFY_ACCESS_TOKEN": "shpat_example-token",
           "ODOO_URL": "https://mycompany.odoo.com", "ODOO_API_KEY": "example-odoo-key"}


@pytest.fixture(scope="module")
def example_env(tmp_path_factory) -> dict:
    """SECRETS plus a real private key file for the NetSuite example."""
    from tests.vendors.netsuite import write_key

    key = tmp_path_factory.mktemp("netsuite") / "netsuite.pem"
    write_key(key, "rsa")
    return {**SECRETS, "NETSUITE_PRIVATE_KEY_FILE": str(key)}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def variables(example: Path) -> dict[str, str | None]:
    """Every ${VAR} of an example -> its default (None: required)."""
    found: dict[str, str | None] = {}
    for f in sorted(example.rglob("*.yaml")):
        for m in VAR.finditer(f.read_text()):
            if found.get(m[1], "") is not None:  # used once without a default: required
                found[m[1]] = m[2]
    return found


def readme_example_names() -> list[str]:
    """The directories named in the README's "Example configurations" table."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("#### Example configurations", 1)[1].split("\n\n", 2)[1]
    return sorted(m[1] for m in re.finditer(r"^\| `([a-z0-9-]+)` \|", table, re.M))


def test_every_example_is_documented_in_the_readme_and_has_a_bridge_yaml_and_adapter_files():
    assert [p.name for p in EXAMPLES] == readme_example_names()
    for example in EXAMPLES:
        assert (example / "bridge.yaml").is_file()
        assert all(f.name[:2].isdigit() and f.name[2] == "-" for f in (example / "adapters").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_check_config(example, example_env):
    result = CliRunner().invoke(main, ["check-config", "--config", str(example)], env=example_env)
    assert result.exit_code == 0, result.output
    for secret in SECRETS.values():
        assert secret not in result.output


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_an_example_without_its_environment_names_each_missing_variable_once(example):
    needed = variables(example)
    result = CliRunner().invoke(main, ["check-config", "--config", str(example)],
                                env=dict.fromkeys(needed))  # None: unset
    assert result.exit_code == 1
    problems = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    required = sorted(var for var, default in needed.items() if default is None)
    assert required, "every example needs at least NEWSTORE_API_KEY"
    # one problem per unset variable, naming it, and nothing that follows from it
    assert sorted(re.search(r"environment variable (\w+) is not set", p)[1] for p in problems) == required, \
        result.output


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_examples_bridge_yaml_says_which_variables_it_needs(example):
    text = (example / "bridge.yaml").read_text()
    needs = re.search(r"^# Needs: ([A-Z0-9_, ]+)\.$", text, re.M)
    optional = re.search(r"^# Optional: ([A-Z0-9_, ]+) ", text, re.M)
    assert needs, f"{example.name}/bridge.yaml: no '# Needs: VAR, VAR.' line"
    needed = variables(example)
    assert set(needs[1].split(", ")) == {v for v, default in needed.items() if default is None}
    assert set(optional[1].split(", ") if optional else []) == {v for v, d in needed.items() if d is not None}


def readme_variable_rows() -> set[tuple[str, str, str | None]]:
    """(example, variable, default or None) from the README's table of example variables."""
    text = (ROOT / "README.md").read_text()
    rows = set()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`[a-z0-9-]+`", cells[0]) and re.fullmatch(r"`[A-Z0-9_]+`", cells[1]):
            default = None if cells[3] == "required" else cells[3].strip("`")
            rows.add((cells[0].strip("`"), cells[1].strip("`"), default))
    return rows


def test_the_readme_lists_every_variable_of_every_example_with_its_default():
    expected = {(e.name, var, default) for e in EXAMPLES for var, default in variables(e).items()}
    assert readme_variable_rows() == expected


def test_the_demo_erp_answers_the_rest_adapters_default_wire_format():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(DEPLOY / "demo-erp" / "server.py")],
                            env={**os.environ, "PORT": str(port), "DEMO_ERP_TOKEN": "t0k"})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                assert urllib.request.urlopen(f"{url}/health", timeout=1).status == 200
                break
            except OSError:
                time.sleep(0.05)
        body = {"items": [{"product": "1000061", "location": "DC01"}, {"product": "B", "location": "S1"}]}
        req = urllib.request.Request(f"{url}/atp", data=orjson.dumps(body), method="POST",
                                     headers={"Authorization": "Bearer t0k", "Content-Type": "application/json"})
        answer = orjson.loads(urllib.request.urlopen(req, timeout=5).read())
        assert [(i["product"], i["location"]) for i in answer["items"]] == [("1000061", "DC01"), ("B", "S1")]
        assert all(isinstance(i["atp"], int) and i["atp"] >= 0 for i in answer["items"])
        req.remove_header("Authorization")
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(req, timeout=5)
        assert denied.value.code == 401
    finally:
        proc.terminate()
        proc.wait(5)
