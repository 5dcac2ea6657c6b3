"""deploy/examples: every example serves real answers, end to end.

Each directory in ``deploy/examples/`` is copied on its own (as the Docker
recipe mounts it at /etc/atp-bridge, so it must hold everything it needs) and
served by a real ``atp-bridge serve`` through ``ATP_BRIDGE_CONFIG``, with its
``${VAR}`` pointing at loopback stand-ins: a FakeErp answering the wire format
and credentials its REST adapter is configured for, and a real redis-server.
The directories are discovered: one without a case in ``CASES`` fails.
"""
from __future__ import annotations

import base64
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tests.erp_server import FakeErp
from tests.serve import BridgeProcess

pytestmark = pytest.mark.slow

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.iterdir() if p.is_dir())
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")

API_KEY = "example-newstore-key-0123456789"
ERP_TOKEN = "example-erp-token-4242"
ERP_PASSWORD = "example-erp-password-4242"
ERPNEXT_API_KEY = "4d8c1f0a9b2e7f3"
ERPNEXT_API_SECRET = "example-erpnext-secret-4242"
SHOPIFY_ACCESS_TOKEN = "shpat_example0123456789abcdef"
ODOO_API_KEY = "example-odoo-key-4242"
SALESFORCE_CLIENT_ID = "3MVG9.example-consumer-key"
SALESFORCE_CLIENT_SECRET = "example-salesforce-secret-4242"
CT_CLIENT_ID = "example-ct-client-4242"
CT_CLIENT_SECRET = "example-ct-secret-4242"


@dataclass
class Case:
    """How to serve one example. ``env``: every variable the example uses, "{erp}"
    and "{redis}" standing for the stand-ins' URLs; None leaves it unset, so the
    example's ``${VAR:-default}`` applies. ``ask``: (product_id,
    external_identifier, location, expected atp) for every pair of the request
    (products x locations). ``erp_stock`` is keyed as the ERP is asked
    (the adapter's ``match_on``); ``erp_auth`` is the Authorization header the
    ERP demands (anything else is a 401). A vendor example brings its own
    stand-in: ``standin`` starts it (seeded, demanding the example's
    credentials) and ``asked`` counts the calls it got."""

    env: dict[str, str | None]
    ask: list[tuple[str, str, str, int]]
    erp_stock: dict[tuple[str, str], int] = field(default_factory=dict)
    erp_auth: str | None = None
    redis: bool = False
    standin: Callable | None = None
    asked: Callable = lambda erp: len(erp.requests("/atp"))

    @property
    def erp(self) -> bool:
        return any("{erp}" in (v or "") for v in self.env.values())


def sap(seed) -> Callable:
    from tests.vendors.sap import SapS4

    def start():
        standin = SapS4()
        standin.auth = ("basic", "ATP_BRIDGE", ERP_PASSWORD)
        seed(standin)
        return standin.start()
    return start


def erpnext(seed) -> Callable:
    from tests.vendors.erpnext import ERPNext

    def start():
        standin = ERPNext(api_key=ERPNEXT_API_KEY, api_secret=ERPNEXT_API_SECRET)
        seed(standin)
        return standin.start()
    return start


def commercetools(seed) -> Callable:
    from tests.vendors.commercetools import Commercetools

    def start():
        standin = Commercetools(project_key="atp-demo", client_id=CT_CLIENT_ID, client_secret=CT_CLIENT_SECRET)
        seed(standin)
        return standin.start()
    return start


def odoo(seed) -> Callable:
    from tests.vendors.odoo import Odoo

    def start():
        standin = Odoo(api_key=ODOO_API_KEY)  # database "mycompany", the example's default
        seed(standin)
        return standin.start()
    return start


def shopify(seed) -> Callable:
    from tests.vendors.shopify import ShopifyAdmin

    def start():
        standin = ShopifyAdmin(token=SHOPIFY_ACCESS_TOKEN)
        seed(standin)
        return standin.start()
    return start


def salesforce(seed) -> Callable:
    from tests.vendors.salesforce import OmnichannelInventory

    def start():
        standin = OmnichannelInventory(client_id=SALESFORCE_CLIENT_ID, client_secret=SALESFORCE_CLIENT_SECRET)
        seed(standin)
        return standin.start()
    return start


def d365(seed) -> Callable:
    from tests.vendors.d365 import InventoryVisibilityServer

    def start():
        standin = InventoryVisibilityServer()
        seed(standin)
        return standin.start()
    return start


NETSUITE_KEY = Path(tempfile.mkdtemp(prefix="atp-bridge-ns-")) / "netsuite.pem"


def netsuite(seed) -> Callable:
    from tests.vendors.netsuite import NetSuite, public_key, write_key

    def start():
        write_key(NETSUITE_KEY, "rsa")  # made now: no key is ever committed
        standin = NetSuite(client_id="ns-client-0001", certificates={"cert-rsa": public_key(NETSUITE_KEY)})
        seed(standin)
        return standin.start()
    return start


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


CASES = {
    # data/inventory.csv: 1000061@US01 = 10, 10000211@DC01 = 120; safety_stock 1
    "csv-only": Case(
        env={"NEWSTORE_API_KEY": API_KEY},
        ask=[("p-1000061", "1000061", "US01", 9), ("p-1000061", "1000061", "DC01", 0),
             ("p-10000211", "10000211", "US01", 3), ("p-10000211", "10000211", "DC01", 119)]),
    "erp-only": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "ERP_URL": "{erp}/atp", "ERP_TOKEN": ERP_TOKEN,
             "ERP_HEALTH_URL": "{erp}/health"},
        erp_stock={("1000061", "DC01"): 40},
        erp_auth=f"Bearer {ERP_TOKEN}",
        ask=[("p-1000061", "1000061", "DC01", 40)]),
    "erp-behind-redis-cache": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "ERP_URL": "{erp}/atp", "ERP_TOKEN": ERP_TOKEN,
             "ERP_HEALTH_URL": "{erp}/health", "REDIS_URL": "{redis}"},
        erp_stock={("1000061", "DC01"): 40},
        erp_auth=f"Bearer {ERP_TOKEN}",
        redis=True,
        ask=[("p-1000061", "1000061", "DC01", 40)]),
    # data/stores.csv (by EAN = external_identifier): 1000061@S001 = 3; the ERP is
    # asked by product_id (match_on) as user atp-bridge (the default); DC01 keeps 5
    "stores-csv-plus-dc-erp": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "ERP_URL": "{erp}/atp", "ERP_USER": None,
             "ERP_PASSWORD": ERP_PASSWORD, "ERP_HEALTH_URL": "{erp}/health"},
        erp_stock={("p-1000061", "DC01"): 40},
        erp_auth=basic("atp-bridge", ERP_PASSWORD),
        ask=[("p-1000061", "1000061", "S001", 3), ("p-1000061", "1000061", "DC01", 35)]),
    # the example's location_map: store-seattle -> 1/11, dc-west -> 2/21
    "d365-inventory-visibility": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "D365_IV_URL": "{erp}",
             "D365_ENVIRONMENT_ID": "9a1b2c3d-4e5f-4a6b-8c7d-0123456789ab", "D365_ORGANIZATION_ID": "usmf",
             "AZURE_TENANT_ID": "11111111-2222-3333-4444-555555555555",
             "AZURE_CLIENT_ID": "2d3e4f50-6172-4839-9a0b-1c2d3e4f5061", "AZURE_CLIENT_SECRET": "iv-app-secret-0001",
             "D365_AAD_AUTHORITY": "{erp}", "D365_SECURITY_TOKEN_URL": "{erp}/token"},
        standin=d365(lambda s: s.put("1000061", "1", "11", 12)),
        asked=lambda s: len(s.requests(s.query_path)),
        ask=[("p-1000061", "1000061", "store-seattle", 12), ("p-1000061", "1000061", "dc-west", 0)]),
    # the example's location_map: US01 -> NetSuite location 11
    "netsuite": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "NETSUITE_ACCOUNT_ID": "1234567", "NETSUITE_URL": "{erp}",
             "NETSUITE_CLIENT_ID": "ns-client-0001", "NETSUITE_CERTIFICATE_ID": "cert-rsa",
             "NETSUITE_PRIVATE_KEY_FILE": str(NETSUITE_KEY)},
        standin=netsuite(lambda s: s.stock.update({("1000061", "11"): "14"})),
        asked=lambda s: len(s.suiteql_calls()),
        ask=[("p-1000061", "1000061", "US01", 14)]),
    # 1000061 at WH-EAST (US01 in the example's location_map): 14 available to fulfill
    "salesforce-oci": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "SALESFORCE_URL": "{erp}", "SALESFORCE_API_VERSION": None,
             "SALESFORCE_CLIENT_ID": SALESFORCE_CLIENT_ID, "SALESFORCE_CLIENT_SECRET": SALESFORCE_CLIENT_SECRET},
        standin=salesforce(lambda s: s.stock.update({("1000061", "WH-EAST"): 14})),
        asked=lambda s: len(s.asked),
        ask=[("p-1000061", "1000061", "US01", 14), ("p-1000061", "1000061", "US02", 0)]),
    # 1000061 at Shopify location 71234567890 (US01 in the example's location_map): 14 available
    "shopify": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "SHOPIFY_URL": "{erp}", "SHOPIFY_API_VERSION": None,
             "SHOPIFY_ACCESS_TOKEN": SHOPIFY_ACCESS_TOKEN},
        standin=shopify(lambda s: s.items.update({"1000061": {71234567890: 14}})),
        asked=lambda s: len(s.asked),
        ask=[("p-1000061", "1000061", "US01", 14), ("p-1000061", "1000061", "US02", 0)]),
    # the example's location_map: US01 -> stock.location 8, US02 -> 19 (sent as integers)
    "odoo": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "ODOO_URL": "{erp}", "ODOO_DATABASE": None,
             "ODOO_API_KEY": ODOO_API_KEY},
        standin=odoo(lambda s: s.stock.update({("1000061", 8): 12.0})),
        asked=lambda s: len(s.asked),
        ask=[("p-1000061", "1000061", "US01", 12), ("p-1000061", "1000061", "US02", 0)]),
    "sap-availability": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "SAP_URL": "{erp}/sap/opu/odata/sap/API_PRODUCT_AVAILY_INFO_BASIC",
             "SAP_USER": None, "ERP_PASSWORD": ERP_PASSWORD},
        standin=sap(lambda s: s.availability.update({("1000061", "1710"): "40.000"})),
        asked=lambda s: len(s.requests("/sap/opu/odata/sap/API_PRODUCT_AVAILY_INFO_BASIC/DetermineAvailabilityAt")),
        ask=[("p-1000061", "1000061", "1710", 40)]),
    # 12 on hand at 1710 (storage location 171A); safety stock 1
    "sap-material-stock": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "SAP_URL": "{erp}/sap/opu/odata/sap/API_MATERIAL_STOCK_SRV",
             "SAP_USER": None, "ERP_PASSWORD": ERP_PASSWORD},
        standin=sap(lambda s: s.add_stock("1000061", "1710", "171A", 12)),
        asked=lambda s: len(s.calls()),
        ask=[("p-1000061", "1000061", "1710", 11), ("p-1000061", "1000061", "1710/171A", 11)]),
    # a Bin of 1000061 in "Stores - AC" (US01 in the example's location_map): 14 actual - 4 reserved
    "erpnext": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "ERPNEXT_URL": "{erp}", "ERPNEXT_API_KEY": ERPNEXT_API_KEY,
             "ERPNEXT_API_SECRET": ERPNEXT_API_SECRET},
        standin=erpnext(lambda s: s.add_bin("1000061", "Stores - AC", 14.0, 4.0)),
        asked=lambda s: len(s.asked),
        ask=[("p-1000061", "1000061", "US01", 10), ("p-1000061", "1000061", "US02", 0)]),
    # the example's location_map: US01 and DC01 are supply channels; WEB is the channel-less stock
    "commercetools": Case(
        env={"NEWSTORE_API_KEY": API_KEY, "CT_API_URL": "{erp}", "CT_AUTH_URL": "{erp}", "CT_PROJECT_KEY": None,
             "CT_CLIENT_ID": CT_CLIENT_ID, "CT_CLIENT_SECRET": CT_CLIENT_SECRET},
        standin=commercetools(lambda s: (s.add("1000061", "b2a4f6e8-1c3d-4e5f-8a9b-0c1d2e3f4a5b", 14),
                                         s.add("1000061", None, 5))),
        asked=lambda s: len(s.asked),
        ask=[("p-1000061", "1000061", "US01", 14), ("p-1000061", "1000061", "DC01", 0),
             ("p-1000061", "1000061", "WEB", 5)]),
}


def variables(example: Path) -> set[str]:
    return {m for f in example.rglob("*.yaml") for m in VAR.findall(f.read_text())}


def request_body(case: Case) -> dict:
    products = list(dict.fromkeys((pid, eid) for pid, eid, _, _ in case.ask))
    locations = list(dict.fromkeys(loc for *_, loc, _ in case.ask))
    assert len(case.ask) == len(products) * len(locations), "ask must cover products x locations"
    return {"products": [{"product_id": p, "external_identifier": e} for p, e in products],
            "fulfillment_locations": locations}


def wait_until_ready(bridge: BridgeProcess, log: Path, timeout: float = 30.0):
    """/readyz once it is 200 (the last answer if it never is)."""
    end = time.monotonic() + timeout
    while True:
        if bridge.proc.poll() is not None:
            pytest.fail(f"atp-bridge serve exited {bridge.proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            ready = bridge.get("/readyz", timeout=2)
            if ready.status_code == 200 or time.monotonic() > end:
                return ready
        except OSError:
            if time.monotonic() > end:
                raise
        time.sleep(0.1)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_serves_real_answers_from_its_own_directory(example, tmp_path, monkeypatch, request):
    case = CASES.get(example.name)
    if case is None:
        pytest.fail(f"deploy/examples/{example.name} has no serve case: add one to CASES in {__file__}")
    assert set(case.env) == variables(example), "the case must set (or leave unset) every ${VAR} the example uses"

    # as in the Docker recipe: the example directory alone, mounted somewhere else
    mounted = tmp_path / "etc" / "atp-bridge"
    shutil.copytree(example, mounted)
    erp = case.standin() if case.standin else FakeErp().start() if case.erp else None
    redis_server = request.getfixturevalue("redis_db") if case.redis else None
    if erp is not None:
        request.addfinalizer(erp.stop)
    if erp is not None and case.standin is None:
        erp.stock.update(case.erp_stock)
        erp.expect_header = ("Authorization", case.erp_auth)
    urls = {"erp": erp.url if erp else "", "redis": redis_server.url if redis_server else ""}
    env = {"ATP_BRIDGE_CONFIG": str(mounted)}
    for name, value in case.env.items():
        monkeypatch.delenv(name, raising=False)  # unset means unset, whatever this shell has
        if value is not None:
            env[name] = value.format(**urls)

    log = tmp_path / "serve.log"
    with BridgeProcess(None, env=env, output=log) as bridge:
        ready = wait_until_ready(bridge, log)
        assert ready.status_code == 200, f"{ready.json()}\n{log.read_text()[-3000:]}"
        assert ready.json()["status"] == "ready"
        assert all(a["ok"] for a in ready.json()["adapters"].values())

        body = request_body(case)
        assert bridge.post(body).status_code == 401  # the key comes from NEWSTORE_API_KEY
        answer = bridge.post(body, headers={"Authorization": API_KEY})
        assert answer.status_code == 200
        assert "X-ATP-Degraded" not in answer.headers, f"{answer.headers}\n{log.read_text()[-3000:]}"
        got = [(a["product_id"], a["external_identifier"], a["fulfillment_location"], a["atp"])
               for a in answer.json()["availabilities"]]
        assert got == case.ask
        assert any(atp > 0 for *_, atp in got)

        if erp is not None:
            assert case.asked(erp), "the ERP stand-in was never asked"
        if redis_server is not None:
            # the answer went through the cache: it is in Redis, and asked again the ERP is not
            calls = case.asked(erp)
            with redis_server.client() as r:
                assert r.get("atp:DC01:1000061") == b"40"
            again = bridge.post(body, headers={"Authorization": API_KEY})
            assert [a["atp"] for a in again.json()["availabilities"]] == [atp for *_, atp in case.ask]
            assert case.asked(erp) == calls


def test_every_case_is_for_an_example_that_exists():
    assert set(CASES) <= {p.name for p in EXAMPLES}
