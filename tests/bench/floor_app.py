"""The floor: the least a Flask endpoint can do for ``POST /availabilities``.

Parse the body with orjson, look every (external_identifier, location) pair up
in a plain dict loaded at import from ``$FLOOR_CSV`` (columns product,
location, atp), serialise with orjson. No validation, no limits, no logging,
no metrics: the benchmark divides atp-bridge's throughput by this one's.
Answers are identical to atp-bridge's with a CSV adapter and default config
for integer, non-negative ATP (unknown pairs answer 0).
"""
from __future__ import annotations

import csv
import os

import orjson
from flask import Flask, Response, request


def load_table(path: str) -> dict[tuple[str, str], int]:
    """``{(product, location): atp}`` from a ``product,location,atp`` CSV."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        p, loc, atp = (header.index(c) for c in ("product", "location", "atp"))
        return {(row[p], row[loc]): int(row[atp]) for row in reader if row}


app = Flask(__name__)
TABLE = load_table(os.environ["FLOOR_CSV"]) if os.environ.get("FLOOR_CSV") else {}


@app.post("/availabilities")
def availabilities():
    doc = orjson.loads(request.get_data())
    locations = doc["fulfillment_locations"]
    get = TABLE.get
    ids = [(p["product_id"], p["external_identifier"]) for p in doc["products"]]
    rows = [{"product_id": pid, "external_identifier": eid, "fulfillment_location": loc,
             "atp": get((eid, loc), 0)} for pid, eid in ids for loc in locations]
    return Response(orjson.dumps({"availabilities": rows}), mimetype="application/json")


@app.get("/healthz")
def healthz():
    return Response(b'{"status": "ok"}', mimetype="application/json")
