"""The bridge: fan a request out to its adapters under one deadline, merge, fail safe.

The failure rule is NewStore's own ("when the request can't be processed ...
the platform will assume none of the items are available"), made explicit: any
adapter error, any deadline overrun and any internal bug give an all-zero
answer (or, with ``on_error: zero_failed``, zeros for the failed adapter's
pairs only) plus a reason for the ``X-ATP-Degraded`` header.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from atp_bridge import tracing
from atp_bridge.adapters import adapter_class
from atp_bridge.adapters.base import Adapter, Health
from atp_bridge.config_types import BridgeConfig
from atp_bridge.errors import AdapterError, AdapterTimeout, mask, mask_value
from atp_bridge.planner import Plan, Planner, finalize, merge
from atp_bridge.rules import Rules

log = logging.getLogger("atp_bridge")


@dataclass
class Answer:
    """The merged answer: ``atps`` is the flat product-major grid (None = unknown).

    ``routes`` are the adapters asked, in priority order, and ``outcomes`` what
    each one returned (its values, product-major over its locations) or the
    AdapterError it failed with (``atp-bridge query`` prints them).
    """

    atps: list
    degraded: list[str] = field(default_factory=list)
    routes: Plan = field(default_factory=Plan)
    outcomes: list = field(default_factory=list)
    asked: list = field(default_factory=list)  # product_ids asked of the adapters (bundles expanded)
    bundles: dict = field(default_factory=dict)  # with explain: per bundle and location, its components

    @property
    def adapters(self) -> tuple[str, ...]:
        """The names of the adapters asked, in priority order."""
        return self.routes.names

    @property
    def reason(self) -> str:
        return ",".join(self.degraded)


def build_adapters(config: BridgeConfig) -> tuple[list[Adapter], list[Adapter]]:
    """Build every adapter; return ``(routed in priority order, all)``.

    An adapter named as another's ``upstream`` is reached only through that
    wrapper, which takes its place in the priority order.
    """
    specs = {s.name: s for s in config.adapters}
    built: dict[str, Adapter] = {}
    try:
        for spec in config.adapters:
            if spec.upstream is None:
                built[spec.name] = adapter_class(spec.type).from_config(spec)
        for spec in config.adapters:
            if spec.upstream is not None:
                built[spec.name] = adapter_class(spec.type).from_config(
                    spec, upstream=built[spec.upstream])
    except BaseException:
        for adapter in built.values():
            adapter.close()
        raise
    for spec in config.adapters:  # every adapter type: ids translated before its lookup
        built[spec.name].id_maps = spec.id_maps or None
    wrapper_of = {s.upstream: s.name for s in config.adapters if s.upstream}
    routed = [built[wrapper_of.get(name, name)] for name, s in specs.items() if s.upstream is None]
    return routed, [built[s.name] for s in config.adapters]


def _record_failures(outcomes: list, failures: list[tuple[int, AdapterError]]) -> None:
    """Put each failed route's error where its values would be (after the merge)."""
    for i, error in failures:
        if i >= 0:
            outcomes[i] = error


class Bridge:
    """Answers availability questions from the configured adapters."""

    def __init__(self, config: BridgeConfig, routed: list[Adapter], adapters: list[Adapter],
                 holds=None):
        self.config = config
        self.holds = holds  # atp_bridge.holds.HoldStore or None
        self.adapters = adapters
        self.rules = Rules(config)
        self.planner = Planner(routed, self.rules)
        self.rules.on_change = self.planner.forget
        self.rules.start()
        self.deadline_s = config.deadline_ms / 1000
        self.on_error = config.on_error
        self.merge_mode = config.merge
        # one pool for the process, never one per request
        self.executor = ThreadPoolExecutor(config.adapter_threads, thread_name_prefix="atp-adapter")

    @classmethod
    def from_config(cls, config: BridgeConfig) -> "Bridge":
        routed, adapters = build_adapters(config)
        holds = None
        if config.holds:
            from atp_bridge.holds import HoldStore

            holds = HoldStore.from_config(config.holds)
            holds.start()
        return cls(config, routed, adapters, holds)

    def answer(self, pids: list[str], eids: list[str], locations: list[str],
               started: float | None = None, omit_unknown: bool | None = None,
               explain: bool = False) -> Answer:
        """Merged ATP for every (product, location) pair; never raises AdapterError.

        Pairs no adapter knows are 0, or None when ``omit_unknown`` (default:
        the config's) so that the caller can leave them out. The ATP rules
        (atp_bridge/rules) apply after the merge; ``explain`` records how each
        bundle was computed (``Answer.bundles``).
        """
        omit = self.config.omit_unknown if omit_unknown is None else omit_unknown
        started = time.monotonic() if started is None else started
        deadline = started + self.deadline_s
        rules = self.rules
        expansion = None
        if rules.bundles is not None:
            expansion = rules.bundles.expand(pids, eids)
        requested = pids
        if expansion is not None:  # the components go into the same batches
            pids, eids = expansion.pids, expansion.eids
        routes = self.planner.routes(tuple(locations))
        answers: list = [None] * len(routes)
        failures: list[tuple[int, AdapterError]] = []
        # blocking adapters go to the pool first; in-memory ones run here meanwhile
        submit = self.executor.submit if tracing.tracer is None else tracing.submitter(self.executor)
        pending = {submit(route.adapter.fetch, route.batch(pids, eids, deadline)): i
                   for i, route in routes.blocking}
        for i, route in routes.inline:
            try:
                answers[i] = route.adapter.fetch(route.batch(pids, eids, deadline))
            except AdapterError as e:
                failures.append((i, e))
        if pending:
            done, not_done = wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            for fut in not_done:
                fut.cancel()
                i = pending[fut]
                failures.append((i, AdapterTimeout(routes[i].adapter.name,
                                                   f"no answer within deadline_ms={self.config.deadline_ms}")))
            for fut in done:
                i = pending[fut]
                try:
                    answers[i] = fut.result()
                except AdapterError as e:
                    failures.append((i, e))
        if time.monotonic() > deadline and not failures:
            failures.append((-1, AdapterTimeout("*", "deadline passed while merging")))

        n_p, n_l = len(pids), len(locations)
        result = Answer([], routes=routes, outcomes=answers, asked=pids)
        if failures:
            failures.sort(key=lambda f: f[0])
            result.degraded = [f"{e.reason}:{e.adapter}" for _, e in failures]
            log.warning("degraded answer, all pairs %s: %s",
                        "of failed adapters zeroed" if self.on_error == "zero_failed" else "zeroed",
                        "; ".join(str(e) for _, e in failures))
            if self.on_error == "zero_all" or any(i < 0 for i, _ in failures):
                result.atps = [0] * (len(requested) * n_l)
                _record_failures(answers, failures)
                return result

        if len(routes) == 1 and routes[0].aligned and answers[0] is not None:
            grid = answers[0]
        else:
            grid = [None] * (n_p * n_l)
            for route, ans in zip(routes, answers):
                if ans is not None:
                    merge(grid, ans, route.positions(n_p, n_l), self.merge_mode)
        safety, rules_safety = routes.safety, rules.safety
        if rules.active:
            safety = rules_safety.per_pair(pids, locations, safety)
        atps = finalize(grid, safety, None if omit else 0, rules_safety.whole)
        for i, _ in failures:  # zero_failed: only what the failed adapter was asked
            for k in routes[i].positions(n_p, n_l):
                atps[k] = 0
        holds = self.holds
        if holds is not None:
            holds.apply(atps, pids, locations)
        if expansion is not None:
            atps = expansion.compute(atps, locations, rules_safety, routes.safety,
                                     holds.held if holds is not None and holds.any else None,
                                     result.bundles if explain else None)
        if rules.caps is not None:
            rules.caps.apply(atps, requested, locations)
        result.atps = atps
        _record_failures(answers, failures)
        return result

    def health(self) -> dict[str, Health]:
        """Every adapter's health (wrapped upstreams included), secrets masked:
        an adapter's detail may quote a URL or a library error."""
        out = {}
        for adapter in self.adapters:
            try:
                h = adapter.health()
            except Exception as e:  # a health check must never take /readyz down
                h = Health(False, f"health check failed: {type(e).__name__}: {e}")
            out[adapter.name] = Health(h.ok, mask(h.detail), mask_value(dict(h.info)))
        return out

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.rules.close()
        if self.holds is not None:
            self.holds.close()
        for adapter in self.adapters:
            adapter.close()
