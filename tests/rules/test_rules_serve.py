"""The ATP rules end to end: real ``atp-bridge serve`` processes, CSV sources, exact values.

Order of application (README "ATP rules"): merge -> safety stock (pair,
product, location, default) -> bundles -> caps -> holds.
"""
import subprocess
import sys
import time

import pytest

from tests.conftest import write_yaml
from tests.erp_server import FakeErp
from tests.serve import subprocess_env

LOCS = ["S1", "S2", "S3"]
PRODUCTS = ["A", "B", "C", "KIT", "BOX"]


def body(products, locations=LOCS):
    return {"products": [{"product_id": p, "external_identifier": f"ext-{p}"} for p in products],
            "fulfillment_locations": locations}


def atps(resp) -> dict:
    assert resp.status_code == 200, resp.text
    return {(a["product_id"], a["fulfillment_location"]): a["atp"] for a in resp.json()["availabilities"]}


def csv(path, text):
    path.write_text(text.strip() + "\n")
    return path.name


@pytest.fixture
def rules_config(tmp_path):
    csv(tmp_path / "stock.csv", """
product,location,atp
A,S1,10
A,S2,20
B,S1,3
B,S2,9
C,S1,30
C,S2,12
C,S3,10
""")
    csv(tmp_path / "extra.csv", "product,location,atp\nA,S1,2\nC,S1,1")
    csv(tmp_path / "safety.csv", """
product,location,units
A,S1,1
A,*,4
*,S1,0
""")
    write_yaml(tmp_path / "bridge.yaml", {
        "merge": "sum",
        "safety_stock": {"default": 3, "locations": {"S2": 2}, "products": {"B": 1},
                         "file": "safety.csv", "reload_interval_s": 0.1},
        "bundles": {"KIT": {"A": 2, "B": 1}, "BOX": {"KIT": 2, "C": 1}},
        "caps": {"default": 50, "locations": {"S1": 5}, "products": {"C": 8}},
    })
    write_yaml(tmp_path / "adapters" / "10-stock.yaml",
               {"name": "stock", "type": "csv", "path": "stock.csv", "match_on": "product_id"})
    write_yaml(tmp_path / "adapters" / "20-extra.yaml",
               {"name": "extra", "type": "csv", "path": "extra.csv", "match_on": "product_id",
                "locations": ["S1"]})
    return tmp_path


# merged (sum): A 12/20/-, B 3/9/-, C 31/12/10
# safety: A@S1 pair 1, A@S2 product 4, B product 1, C@S1 location S1 0 (file), C@S2 location 2,
#         C@S3 default 3
# after safety: A 11/16/-, B 2/8/-, C 31/10/7
# KIT = min(A//2, B) then its own safety (S1 0, S2 2, S3 3): S1 min(5,2)=2, S2 min(8,8)=8-2=6, S3 unknown
# BOX = min(KIT//2, C) then safety: S1 min(1,31)=1, S2 min(3,10)=3-2=1, S3 unknown
# caps: S1 5 for all, C 8 (and min with S1's 5), default 50
EXPECTED = {
    ("A", "S1"): 5, ("A", "S2"): 16, ("A", "S3"): 0,
    ("B", "S1"): 2, ("B", "S2"): 8, ("B", "S3"): 0,
    ("C", "S1"): 5, ("C", "S2"): 8, ("C", "S3"): 7,
    ("KIT", "S1"): 2, ("KIT", "S2"): 6, ("KIT", "S3"): 0,
    ("BOX", "S1"): 1, ("BOX", "S2"): 1, ("BOX", "S3"): 0,
}


def test_every_rule_applies_in_order_with_exact_values(serve, rules_config):
    bridge = serve(rules_config)
    assert atps(bridge.post(body(PRODUCTS))) == EXPECTED


def test_a_bundle_asked_alone_answers_only_itself_and_unknown_is_left_out_with_omit_unknown(
        serve, rules_config):
    bridge = serve(rules_config)
    got = atps(bridge.post(body(["BOX"])))
    assert got == {("BOX", loc): EXPECTED[("BOX", loc)] for loc in LOCS}  # no component in the answer

    bridge_yaml = rules_config / "bridge.yaml"
    bridge_yaml.write_text(bridge_yaml.read_text() + "omit_unknown: true\n")
    omitting = serve(rules_config)
    got = atps(omitting.post(body(["BOX", "C"])))
    # BOX@S3: its components A and B are unknown there, so the bundle is unknown: left out
    assert got == {("BOX", "S1"): 1, ("BOX", "S2"): 1,
                   ("C", "S1"): 5, ("C", "S2"): 8, ("C", "S3"): 7}


def test_a_changed_safety_stock_file_is_served_within_the_reload_interval(serve, rules_config):
    bridge = serve(rules_config)
    assert atps(bridge.post(body(["A"], ["S2"]))) == {("A", "S2"): 16}
    csv(rules_config / "safety.csv", "product,location,units\nA,S2,15\n")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if atps(bridge.post(body(["A"], ["S2"]))) == {("A", "S2"): 5}:  # 20 - 15: the pair rule now
            break
        time.sleep(0.05)
    else:
        pytest.fail("the new safety stock file was not served within 10 s")
    # the location rule S1: 0 left with the old file: C@S1 falls back to the default 3
    assert atps(bridge.post(body(["C"], ["S1"]))) == {("C", "S1"): 5}  # 31 - 3 = 28, capped at 5
    assert atps(bridge.post(body(["B"], ["S2"]))) == {("B", "S2"): 8}


def test_a_broken_safety_stock_file_keeps_the_rules_last_read(serve, rules_config):
    bridge = serve(rules_config)
    csv(rules_config / "safety.csv", "product,location,units\nA,S2,-4\n")
    time.sleep(1.0)  # several reload intervals: the bad version is read and refused
    assert atps(bridge.post(body(PRODUCTS))) == EXPECTED


def test_zero_failed_zeroes_the_failed_adapters_pairs_and_the_bundles_made_of_them(serve, rules_config):
    """The ERP serving S2 fails: its pairs are 0, and so is every bundle at S2; S1 and S3
    are answered with every rule. Components go out in the ERP's one batch."""
    with FakeErp() as erp:
        erp.mode = "error"
        bridge_yaml = rules_config / "bridge.yaml"
        bridge_yaml.write_text(bridge_yaml.read_text() + "on_error: zero_failed\n")
        write_yaml(rules_config / "adapters" / "30-erp.yaml",
                   {"name": "erp", "type": "rest", "url": erp.url + "/atp", "locations": ["S2"],
                    "match_on": "product_id", "retries": 0, "circuit": {"failure_threshold": 100}})
        bridge = serve(rules_config)
        resp = bridge.post(body(PRODUCTS))
        got = atps(resp)
        assert resp.headers["X-ATP-Degraded"] == "error:erp"
        assert got == {**EXPECTED, **{(p, "S2"): 0 for p in PRODUCTS}}
        (seen,) = erp.requests()  # one call: the request's products and the bundles' components
        asked = {(i["product"], i["location"]) for i in seen.json()["items"]}
        assert asked == {(p, "S2") for p in ("A", "B", "C")}


def test_holds_on_a_component_and_everywhere_zero_the_bundles_too(serve, rules_config, redis_db):
    bridge_yaml = rules_config / "bridge.yaml"
    bridge_yaml.write_text(bridge_yaml.read_text() + f"holds: {{url: '{redis_db.url}', refresh_s: 0.05}}\n")
    bridge = serve(rules_config)

    def holds(*args):
        done = subprocess.run([sys.executable, "-m", "atp_bridge.cli", "holds", *args,
                               "--config", str(rules_config)], capture_output=True, text=True,
                              env=subprocess_env(), timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "held 1 product(s) at S1 until removed: B (reason: recount)" in holds(
        "add", "--product", "B", "--location", "S1", "--reason", "recount")
    holds("add", "--product", "C", "--location", "*", "--ttl", "600")
    expected = {**EXPECTED, ("B", "S1"): 0, ("KIT", "S1"): 0, ("BOX", "S1"): 0,
                ("C", "S1"): 0, ("C", "S2"): 0, ("C", "S3"): 0, ("BOX", "S2"): 0}
    wait_for(bridge, expected)
    holds("remove", "--product", "B", "--location", "S1")
    holds("remove", "--product", "C", "--location", "*")
    wait_for(bridge, EXPECTED)


def wait_for(bridge, expected, timeout_s=10):
    end = time.monotonic() + timeout_s
    while True:
        got = atps(bridge.post(body(PRODUCTS)))
        if got == expected or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert got == expected
