"""``atp-bridge query``: one pass through the bridge, with what each step did.

What each adapter answered (bundles' components included), the merged and
rule-applied answer, how each bundle was computed and which component limits
it, the caps and holds in force for each pair (with the hold's reason).
"""
from __future__ import annotations

from atp_bridge.bridge import Answer, Bridge
from atp_bridge.holds import HoldError


def report(bridge: Bridge, products: list[str], locations: list[str]) -> tuple[dict, Answer]:
    """The query's findings as one JSON-ready dict, and the bridge's answer."""
    answer = bridge.answer(products, products, locations, omit_unknown=True, explain=True)  # None = unknown
    per_adapter = {}
    for route, outcome in zip(answer.routes, answer.outcomes):
        if isinstance(outcome, Exception):
            per_adapter[route.adapter.name] = {"error": str(outcome)}
        else:
            pairs = (f"{p}@{loc}" for p in answer.asked for loc in route.locations)
            per_adapter[route.adapter.name] = dict(zip(pairs, outcome))
    holds, holds_error = _holds(bridge, products, locations)
    caps = bridge.rules.caps
    merged = []
    for i, p in enumerate(products):
        for j, loc in enumerate(locations):
            row = {"product": p, "location": loc, "atp": answer.atps[i * len(locations) + j]}
            s = bridge.rules.safety.for_pair(p, loc)
            if s:
                row["safety_stock"] = s
            if caps is not None and caps.for_pair(p, loc) is not None:
                row["cap"] = caps.for_pair(p, loc)
            if (p, loc) in holds:
                row["hold"] = holds[(p, loc)]
            merged.append(row)
    out = {"adapters": per_adapter, "merged": merged, "degraded": answer.degraded}
    if answer.bundles:
        out["bundles"] = answer.bundles
    if holds_error:
        out["holds_error"] = holds_error
    return out, answer


def _holds(bridge: Bridge, products, locations) -> tuple[dict, str | None]:
    """The live holds on these pairs, read from Redis now (with their reasons)."""
    if bridge.holds is None:
        return {}, None
    try:
        listing = bridge.holds.listing()
    except HoldError as e:
        return {}, str(e)
    wanted_p, wanted_l = set(products), set(locations)
    found = {}
    for h in listing:
        if h["product"] not in wanted_p:
            continue
        for loc in (wanted_l if h["location"] == "*" else {h["location"]} & wanted_l):
            found[(h["product"], loc)] = {"kind": h["kind"], "reason": h["reason"],
                                          "everywhere": h["location"] == "*", "expires": h["expires"]}
    return found, None


def render(out: dict, merge: str) -> list[str]:
    """The report as text lines (the table form)."""
    lines = []
    for name, values in out["adapters"].items():
        lines.append(f"adapter {name}:")
        for pair, v in values.items():
            lines.append(f"  {pair:<40} {'unknown' if v is None else v}")
    if not out["adapters"]:
        lines.append("no adapter serves these locations")
    for bundle, rows in out.get("bundles", {}).items():
        lines.append(f"bundle {bundle}:")
        for r in rows:
            parts = ", ".join(f"{c} x{v['quantity']} ({'unknown' if v['atp'] is None else v['atp']})"
                              for c, v in r["components"].items())
            lines.append(f"  @{r['location']}: {parts}; limited by {r['limited_by']}")
    lines.append(f"merged (merge={merge}, then safety stock, bundles, caps, holds):")
    for row in out["merged"]:
        atp = "unknown (0)" if row["atp"] is None else row["atp"]
        notes = []
        if "safety_stock" in row:
            notes.append(f"safety stock {row['safety_stock']:g}")
        if "cap" in row:
            notes.append(f"cap {row['cap']}")
        if "hold" in row:
            h = row["hold"]
            notes.append(f"HELD ({h['kind']}{': ' + h['reason'] if h['reason'] else ''})")
        note = f"  [{'; '.join(notes)}]" if notes else ""
        lines.append(f"  {row['product'] + '@' + row['location']:<40} {atp}{note}")
    if out.get("holds_error"):
        lines.append(f"holds: {out['holds_error']}")
    return lines
