"""Valid requests with huge, ever-different location lists, against a real
``atp-bridge serve``: the planner's cache (and each adapter's table of the
names it serves) stay bounded in size, so the worker's memory stays flat."""
from pathlib import Path

import orjson
import pytest

import atp_bridge
from tests.bench.servers import children, status_mb
from tests.conftest import write_yaml
from tests.serve import BridgeProcess

pytestmark = pytest.mark.slow

SAMPLE_CSV = Path(atp_bridge.__file__).parent / "data" / "sample.csv"
PRODUCT = {"product_id": "1000061", "external_identifier": "1000061"}


def body(r: int) -> bytes:
    """One product x 50,000 locations of 90 characters, none seen in another request."""
    locations = [f"R{r:04d}-{i:06d}-".ljust(90, "x") for i in range(50_000)]
    return orjson.dumps({"products": [PRODUCT], "fulfillment_locations": locations})


def test_210_requests_of_50_000_distinct_long_locations_keep_the_worker_under_300_mb(tmp_path):
    config = write_yaml(tmp_path / "atp-bridge.yaml", {
        "max_pairs": 60_000, "max_body_bytes": 8 * 1024 * 1024,
        "adapters": [{"name": "sample", "type": "csv", "path": str(SAMPLE_CSV)}]})
    with BridgeProcess(config, output=tmp_path / "server.log") as served:
        served.wait_ready()
        worker = children(served.proc.pid)[0]
        rss = []
        for r in range(210):
            resp = served.post(body(r), headers={"Content-Type": "application/json"})
            assert resp.status_code == 200
            rows = resp.json()["availabilities"]
            assert len(rows) == 50_000 and rows[0]["atp"] == 0
            assert rows[-1]["fulfillment_location"] == f"R{r:04d}-049999-".ljust(90, "x")
            rss.append(status_mb(worker))
        assert max(rss) < 300, rss[::30]  # 2.1 GB when every plan was cached
        assert rss[-1] - rss[29] < 50, rss[::30]  # flat once warm: nothing accumulates
