"""Config schemas of the ATP rules: ``safety_stock``, ``bundles``, ``caps``.

Loaded by :mod:`atp_bridge.config` (which reads the rule files and checks the
bundles for cycles once the files are known, see :func:`check_rules`).
"""
from __future__ import annotations

import os

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from atp_bridge.config_types import BundlesConfig, CapsConfig, SafetyStock, resolve_file
from atp_bridge.rules.bundles import read_bundles_file, recipe_problems
from atp_bridge.rules.files import RuleFileError
from atp_bridge.rules.safety import read_safety_file


class Id(fields.String):
    """A product or location id: a non-empty string; a YAML number gets a hint to quote it."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Length(min=1), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValidationError(f"the id {value!r} is a number in YAML: quote it (\"{value}\") "
                                  f"so it is read as the id NewStore sends")
        return super()._deserialize(value, attr, data, **kwargs)


def _units():
    return fields.Float(validate=validate.Range(min=0, error="must not be negative"), allow_nan=False)


class SafetyStockSchema(Schema):
    class Meta:
        unknown = RAISE

    default = fields.Float(load_default=0, validate=validate.Range(min=0, error="must not be negative"))
    locations = fields.Dict(keys=Id(), values=_units(), load_default=dict)
    products = fields.Dict(keys=Id(), values=_units(), load_default=dict)
    file = fields.String(load_default=None, validate=validate.Length(min=1))
    reload_interval_s = fields.Float(load_default=2.0, validate=validate.Range(min=0))

    @post_load
    def _make(self, data, **kwargs):
        return SafetyStock(**data)


class CapsSchema(Schema):
    class Meta:
        unknown = RAISE

    _cap = validate.Range(min=0, error="a cap must not be negative")
    default = fields.Integer(load_default=None, allow_none=True, strict=True, validate=_cap)
    locations = fields.Dict(keys=Id(), values=fields.Integer(strict=True, validate=_cap), load_default=dict)
    products = fields.Dict(keys=Id(), values=fields.Integer(strict=True, validate=_cap), load_default=dict)

    @post_load
    def _make(self, data, **kwargs):
        return CapsConfig(**data)


class BundlesSchema(Schema):
    """``bundles:``: each key with a mapping value is a bundle (``KIT-1: {A: 2, B: 1}``);
    ``file`` and ``reload_interval_s`` name a ``bundle,component,quantity`` CSV."""

    class Meta:
        unknown = INCLUDE

    file = fields.String(load_default=None, validate=validate.Length(min=1))
    reload_interval_s = fields.Float(load_default=2.0, validate=validate.Range(min=0))

    @post_load
    def _make(self, data, **kwargs):
        file, interval = data.pop("file"), data.pop("reload_interval_s")
        errors: dict = {}
        recipes: dict[str, dict[str, int]] = {}
        for bundle, parts in data.items():
            if not isinstance(bundle, str):
                errors[str(bundle)] = [f"the bundle id {bundle!r} is a number in YAML: quote it"]
                continue
            if not isinstance(parts, dict) or not parts:
                errors[bundle] = ["a bundle is a mapping of component: quantity, with at least one component"]
                continue
            recipe = {}
            for part, q in parts.items():
                if not isinstance(part, str) or not part:
                    errors.setdefault(bundle, {})[str(part)] = [
                        "a component id must be a non-empty string (quote numbers)"]
                elif isinstance(q, bool) or not isinstance(q, int) or q < 1:
                    errors.setdefault(bundle, {})[part] = ["quantity must be a whole number of at least 1"]
                else:
                    recipe[part] = q
            recipes[bundle] = recipe
        for key, message in ([] if errors else recipe_problems(recipes)):
            bundle, _, part = key.partition(".")
            if part:  # a bundle listing itself: at bundles.KIT.KIT
                errors.setdefault(bundle, {})[part] = [message]
            elif bundle not in errors:  # a cycle: at the bundle where it closes
                errors[bundle] = [message]
        if errors:
            raise ValidationError(errors)
        return BundlesConfig(recipes=recipes, file=file, reload_interval_s=interval)


def check_rules(settings: dict, base_dir: str) -> tuple[dict, list[tuple[str, str]]]:
    """Resolve the rule files' paths in ``settings`` (in place), read them and check
    the bundles as a whole; returns ``(rule_files, [(key, message)])``."""
    from dataclasses import replace

    problems: list[tuple[str, str]] = []
    ss, bc = settings["safety_stock"], settings.get("bundles")
    if ss.file:
        ss = settings["safety_stock"] = replace(ss, path=os.path.normpath(resolve_file(base_dir, ss.file)))
    if bc is not None and bc.file:
        bc = settings["bundles"] = replace(bc, path=os.path.normpath(resolve_file(base_dir, bc.file)))
    files: dict = {}
    for name, key, part, read in (("safety", "safety_stock.file", ss, read_safety_file),
                                  ("bundles", "bundles.file", bc, read_bundles_file)):
        if part is not None and part.file:
            try:
                files[name] = read(part.path)
            except RuleFileError as e:
                problems.append((key, str(e)))
    if "bundles" in files:  # the inline bundles alone were checked by their schema
        merged = {**bc.recipes, **files["bundles"]}
        problems.extend((f"bundles.{k}", m) for k, m in recipe_problems(merged))
    return files, problems
