"""Configuration: YAML -> ``${VAR}`` expansion -> marshmallow -> frozen dataclasses.

``PATH`` is a directory (``bridge.yaml`` plus ``adapters/*.yaml``, one adapter
per file, file-name order = priority order) or a single YAML file with the same
server-wide keys and an ``adapters:`` list. Every problem is collected and
reported at once as ``file: key: message``; values are never echoed, so
secrets cannot leak through error messages.

An unset variable is reported once per file, as the cause: the key that held
it (its value is now wrong) gets no further messages of its own, and an
adapter that failed for any reason is still known by name, so whatever
refers to it (``upstream: erp``, duplicate names) is judged without it.

Every value taken from the environment by ``${VAR}`` (or ``${VAR:-default}``
with the variable set) is recorded as a secret
(:data:`atp_bridge.errors.SECRETS`): masked as ``***`` wherever text leaves.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from atp_bridge.config_types import AdapterSpec, BridgeConfig, SafetyStock
from atp_bridge.errors import SECRETS, ConfigError, UnknownAdapterType
from atp_bridge.rules.schemas import BundlesSchema, CapsSchema, SafetyStockSchema, check_rules
from atp_bridge.schemas import flatten_messages

ENV_VAR = "ATP_BRIDGE_CONFIG"
CONFIG_HELP = f"Config directory or YAML file (default: ${ENV_VAR}, else the embedded sample)."
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# an adapter's name: a top-level key in adapters/*.yaml, adapters.N.name in a single file
_ADAPTER_NAME = re.compile(r"(adapters\.\d+\.)?name\.")
NAME_FROM_ENV = ("an adapter name cannot come from ${...}: names appear unmasked in metrics, "
                 "the X-ATP-Degraded header and the access log; write it literally")


class _AuthSchema(Schema):
    class Meta:
        unknown = RAISE

    api_keys = fields.List(fields.String(validate=[
        validate.Length(min=20, error="API keys must be at least 20 characters (NewStore's minimum)."),
        # HTTP drops the blanks around a header value, so such a key could never match
        validate.Regexp(r"\A\S(?:.*\S)?\Z", error="an API key may not start or end with whitespace "
                                                "(is there a stray space or newline from the secret store?)"),
    ]), load_default=list)


class _HoldsSchema(Schema):
    """Zero-ATP holds recorded by the fulfillment client (see atp_bridge/holds.py)."""

    class Meta:
        unknown = RAISE

    url = fields.String(required=True, validate=validate.Regexp(
        r"^rediss?://", error="Must be a redis:// or rediss:// URL."))
    key = fields.String(load_default="atp-bridge:holds", validate=validate.Length(min=1))
    ttl_s = fields.Float(load_default=900, validate=validate.Range(min=1))
    refresh_s = fields.Float(load_default=1.0, validate=validate.Range(min=0.05))
    timeout_ms = fields.Integer(load_default=500, validate=validate.Range(min=1))


class BridgeSchema(Schema):
    """Server-wide keys (``bridge.yaml`` or the top of a single file)."""

    class Meta:
        unknown = RAISE

    base_path = fields.String(load_default="/newstore_api/v0",
                              validate=validate.Regexp(r"^(/[A-Za-z0-9._~-]+)*/?$|^$",
                                                       error="Must be a URL path like /newstore_api/v0."))
    auth = fields.Nested(_AuthSchema, load_default=lambda: {"api_keys": []})
    deadline_ms = fields.Integer(load_default=3000, validate=validate.Range(min=10, max=60_000))
    max_pairs = fields.Integer(load_default=50_000, validate=validate.Range(min=1))
    max_body_bytes = fields.Integer(load_default=5 * 1024 * 1024, validate=validate.Range(min=1024))
    merge = fields.String(load_default="first", validate=validate.OneOf(["first", "sum", "min", "max"]))
    on_error = fields.String(load_default="zero_all", validate=validate.OneOf(["zero_all", "zero_failed"]))
    safety_stock = fields.Nested(SafetyStockSchema, load_default=lambda: SafetyStock())
    bundles = fields.Nested(BundlesSchema, load_default=None, allow_none=True)
    caps = fields.Nested(CapsSchema, load_default=None, allow_none=True)
    omit_unknown = fields.Boolean(load_default=False)
    adapter_threads = fields.Integer(load_default=16, validate=validate.Range(min=1, max=1024))
    log_level = fields.String(load_default="INFO", validate=validate.OneOf(
        ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]))
    holds = fields.Nested(_HoldsSchema, load_default=None, allow_none=True)
    adapters = fields.List(fields.Raw(), load_default=list)


class AdapterCommonSchema(Schema):
    """Keys every adapter has; the rest goes to the adapter's own schema."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z0-9_.-]+$", error="Use letters, digits, '_', '-' and '.' only."))
    type = fields.String(required=True, validate=validate.Length(min=1))
    locations = fields.List(fields.String(validate=validate.Length(min=1)),
                            load_default=lambda: ["*"], validate=validate.Length(min=1))
    match_on = fields.String(load_default="external_identifier",
                             validate=validate.OneOf(["external_identifier", "product_id"]))
    # NewStore id -> the source's id (atp_bridge/adapters/idmaps.py)
    location_map = fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                               values=fields.String(validate=validate.Length(min=1)), load_default=None)
    product_map = fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                              values=fields.String(validate=validate.Length(min=1)), load_default=None)
    location_map_file = fields.String(load_default=None, validate=validate.Length(min=1))
    product_map_file = fields.String(load_default=None, validate=validate.Length(min=1))


COMMON_KEYS = frozenset(AdapterCommonSchema().fields)


# -- loading ---------------------------------------------------------------

def default_config_path() -> Path:
    """The embedded default: a sample CSV shipped inside the package."""
    return Path(str(resources.files("atp_bridge") / "data" / "default.yaml"))


def resolve_path(path: str | os.PathLike | None) -> Path:
    """``path``, else ``$ATP_BRIDGE_CONFIG``, else the embedded default."""
    chosen = path or os.environ.get(ENV_VAR)
    return Path(chosen) if chosen else default_config_path()


def load_config(path: str | os.PathLike | None = None) -> BridgeConfig:
    """Load and validate the configuration; raise ConfigError listing every problem."""
    root = resolve_path(path)
    problems: list[str] = []
    if root.is_dir():
        config = _load_dir(root, problems)
    elif root.is_file():
        config = _load_single(root, problems)
    else:
        raise ConfigError([f"{root}: no such file or directory (set --config or {ENV_VAR})"])
    if problems:
        raise ConfigError(problems)
    return config


def _load_dir(root: Path, problems: list[str]) -> BridgeConfig | None:
    bridge_file = root / "bridge.yaml"
    server_unset: set[str] = set()
    server = (_read_yaml(bridge_file, problems, server_unset) if bridge_file.exists() else {}) or {}
    if "adapters" in server:
        problems.append(f"{bridge_file}: adapters: in a config directory, put each adapter "
                        f"in its own file under adapters/")
        server = {k: v for k, v in server.items() if k != "adapters"}
    files = sorted((root / "adapters").glob("*.yaml")) + sorted((root / "adapters").glob("*.yml"))
    files.sort(key=lambda p: p.name)
    if not files:
        problems.append(f"{root / 'adapters'}: no adapter files (*.yaml) found")
    raw_adapters = [(f, "", doc, unset) for f in files
                    if (doc := _read_yaml(f, problems, unset := set())) is not None]
    # relative paths in adapter files resolve against the config directory itself
    return _build(bridge_file, server, server_unset, raw_adapters, problems, root)


def _load_single(path: Path, problems: list[str]) -> BridgeConfig | None:
    unset: set[str] = set()
    doc = _read_yaml(path, problems, unset)
    if doc is None:
        return None
    raw = doc.get("adapters")
    raw_adapters = []
    if isinstance(raw, list):
        raw_adapters = [(path, f"adapters[{i}].", item, _under(unset, f"adapters.{i}."))
                        for i, item in enumerate(raw)]
        if not raw:
            problems.append(f"{path}: adapters: at least one adapter is required")
    else:
        problems.append(f"{path}: adapters: must be a list of adapters")
    server_unset = {k for k in unset if k != "adapters" and not k.startswith("adapters.")}
    return _build(path, doc, server_unset, raw_adapters, problems, path.parent)


def _under(keys: set[str], prefix: str) -> set[str]:
    """The keys below ``prefix``, relative to it."""
    return {k[len(prefix):] for k in keys if k.startswith(prefix)}


def _held_unset(key: str, unset: set[str]) -> bool:
    """True when ``key`` is, or lies below, a key whose value held an unset variable."""
    return any(key == k or key.startswith(k + ".") for k in unset)


def _read_yaml(path: Path, problems: list[str], unset: set[str]):
    """The document with ``${VAR}`` expanded, or None; ``unset`` gets the
    dotted keys whose value held an unset variable."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problems.append(f"{path}: {where}invalid YAML: {getattr(e, 'problem', None) or e}")
        return None
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path}: cannot read: {e}")
        return None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        problems.append(f"{path}: the document must be a mapping of keys, not {type(doc).__name__}")
        return None
    where: dict[str | None, list[str]] = {}  # unset variable -> the keys that use it
    doc = _expand(doc, path, "", problems, where)
    for var, keys in where.items():
        unset.update(keys)
        if var is None:  # already reported as the cause (an adapter name)
            continue
        also = f"also used in {', '.join(keys[1:])}; " if len(keys) > 1 else ""
        problems.append(f"{path}: {keys[0]}: environment variable {var} is not set "
                        f"({also}use ${{{var}:-default}} for a default)")
    return doc


def _expand(value, path: Path, key: str, problems: list[str], where: dict):
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string value; record
    the keys of each unset variable in ``where`` (under None: no message)."""
    if isinstance(value, dict):
        return {k: _expand(v, path, f"{key}{k}.", problems, where)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path, f"{key}{i}.", problems, where) for i, v in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        used, missing = [], []

        def sub(m):
            if m.group(0) == "$$":
                return "$"
            var, default = m.group(1), m.group(2)
            used.append(var)
            got = os.environ.get(var)
            if got is None or (got == "" and default is not None):
                if default is None:
                    missing.append(var)
                    return ""
                return default  # written in the file itself: not a secret
            SECRETS.add(got)  # before any problem or error can quote it
            return got

        expanded = _VAR.sub(sub, value)
        here = key.rstrip(".")
        if used and _ADAPTER_NAME.fullmatch(key):  # names are shown unmasked, by design
            # setting the variable would not help, so this is the cause to report
            problems.append(f"{path}: {here}: {NAME_FROM_ENV}")
            missing = [None] if missing else []
        for var in dict.fromkeys(missing):
            where.setdefault(var, []).append(here)
        return expanded
    return value


def _report(problems: list[str], file: Path, prefix: str, err: ValidationError,
            unset: set[str] = frozenset()) -> None:
    for key, msg in flatten_messages(err.messages, root="(document)"):
        if _held_unset(key, unset):  # the unset variable, already reported, is the cause
            continue
        if msg == "Unknown field.":
            msg = "unknown key (check the spelling; see the README's configuration reference)"
        problems.append(f"{file}: {prefix}{key}: {msg}")


def _build(bridge_file: Path, server, server_unset: set[str], raw_adapters, problems: list[str],
           base_dir: Path) -> BridgeConfig | None:
    settings = {}
    try:
        settings = BridgeSchema().load(server)
    except ValidationError as e:
        _report(problems, bridge_file, "", e, server_unset)
    rule_files = {}
    if settings:  # the rule files are read now: a broken one is a problem with file and key
        rule_files, found = check_rules(settings, str(base_dir))
        problems.extend(f"{bridge_file}: {key}: {msg}" for key, msg in found
                        if not _held_unset(key, server_unset))
    named = [_adapter_spec(f, p, raw, unset, base_dir, problems) for f, p, raw, unset in raw_adapters]
    _check_names(named, problems)
    if problems:
        return None
    settings.pop("adapters", None)
    auth = settings.pop("auth")
    base_path = settings.pop("base_path").rstrip("/")
    return BridgeConfig(adapters=tuple(spec for *_, spec in named), api_keys=tuple(auth["api_keys"]),
                        base_path=base_path, source=str(bridge_file), rule_files=rule_files, **settings)


def _adapter_spec(file: Path, prefix: str, raw, unset: set[str], base_dir: Path,
                  problems: list[str]) -> tuple[str | None, Path, str, AdapterSpec | None]:
    """``(name, file, prefix, spec)``; spec is None when the adapter has a
    problem, name None when even the name is unusable."""
    from atp_bridge.adapters import adapter_class  # late: adapters import atp_bridge.errors

    if not isinstance(raw, dict):
        problems.append(f"{file}: {prefix.rstrip('.') or '(document)'}: an adapter must be a mapping")
        return None, file, prefix, None
    common_raw = {k: v for k, v in raw.items() if k in COMMON_KEYS}
    own_raw = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
    try:
        common = AdapterCommonSchema().load(common_raw)
        common_ok = True
    except ValidationError as e:
        _report(problems, file, prefix, e, unset)
        common, common_ok = e.valid_data or {}, False  # a valid name and type are still usable
    cls = None
    if "type" in common:
        try:
            cls = adapter_class(common["type"])
        except UnknownAdapterType as e:
            problems.append(f"{file}: {prefix}type: {e}")
    name = common.get("name")
    if cls is None:
        return name, file, prefix, None
    options = {}
    if cls.options_schema is None:
        if own_raw:
            problems.append(f"{file}: {prefix}{sorted(own_raw)[0]}: unknown key "
                            f"(adapter type {common['type']!r} takes no options)")
            return name, file, prefix, None
    else:
        try:
            options = cls.options_schema().load(own_raw)
        except ValidationError as e:
            _report(problems, file, prefix, e, unset)
            return name, file, prefix, None
    if not common_ok:
        return name, file, prefix, None
    id_maps = _id_maps(common, base_dir, file, prefix, problems)
    if id_maps is None:
        return name, file, prefix, None
    spec = AdapterSpec(name=name, type=common["type"], locations=tuple(common["locations"]),
                       match_on=common["match_on"], options=options, upstream=options.get("upstream"),
                       source=str(file), base_dir=str(base_dir), key_prefix=prefix, id_maps=id_maps)
    found = [(key, msg) for key, msg in cls.check(spec) if not _held_unset(key, unset)]
    problems.extend(f"{file}: {prefix}{key}: {msg}" for key, msg in found)
    # an unset variable is reported already, but the adapter is not usable either
    return name, file, prefix, None if found or unset else spec


def _id_maps(common: dict, base_dir: Path, file: Path, prefix: str, problems: list[str]):
    """The adapter's IdMaps (map files read now, inline entries win), or None
    after reporting why not."""
    from atp_bridge.adapters.idmaps import IdMaps, read_map_file

    maps = {}
    for kind in ("product", "location"):
        merged, key = {}, f"{kind}_map_file"
        if common.get(key):
            path = base_dir / common[key]
            try:
                merged.update(read_map_file(str(path)))
            except OSError as e:
                problems.append(f"{file}: {prefix}{key}: cannot read {path}: {e.strerror or e}")
                return None
            except ValueError as e:
                problems.append(f"{file}: {prefix}{key}: {path}: {e}")
                return None
        merged.update(common.get(f"{kind}_map") or {})
        maps[kind] = merged
    return IdMaps(maps["product"], maps["location"])


def _check_names(named: list[tuple], problems: list[str]) -> None:
    """Unique names and sound upstreams; ``named`` is what :func:`_adapter_spec`
    returned. An adapter that failed still has its name: its own problems are
    reported, so a reference to it is not one more."""
    seen: dict[str, tuple[Path, AdapterSpec | None]] = {}
    for name, file, prefix, _ in named:
        if name is None:
            continue
        if name in seen:
            problems.append(f"{file}: {prefix}name: adapter name {name!r} is already used in {seen[name][0]}")
        seen[name] = (file, _)
    wrapped: dict[str, str] = {}
    for *_, s in named:
        if s is None or s.upstream is None:
            continue
        if s.upstream not in seen:
            problems.append(f"{s.source}: {s.key_prefix}upstream: no adapter named {s.upstream!r} "
                            f"(known: {', '.join(seen)})")
            continue
        up = seen[s.upstream][1]
        if up is None:  # it failed: its problems are reported, the pairing cannot be judged
            continue
        if s.upstream == s.name or up.upstream is not None:
            problems.append(f"{s.source}: {s.key_prefix}upstream: {s.upstream!r} cannot be wrapped "
                            f"(it is this adapter or itself wraps another)")
        elif s.upstream in wrapped:
            problems.append(f"{s.source}: {s.key_prefix}upstream: {s.upstream!r} is already wrapped by "
                            f"{wrapped[s.upstream]!r}")
        elif up.match_on != s.match_on:  # the wrapper hands its keys on as they are
            problems.append(f"{s.source}: {s.key_prefix}match_on: {s.name!r} uses {s.match_on!r} but its upstream "
                            f"{s.upstream!r} uses {up.match_on!r}; make them equal")
        else:
            wrapped[s.upstream] = s.name
