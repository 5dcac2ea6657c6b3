"""What every connector's tests share: building a connector through its own
schema as the config loader does, and reading config problems."""
from __future__ import annotations

import pytest

from atp_bridge.config import load_config
from atp_bridge.config_types import AdapterSpec
from atp_bridge.errors import ConfigError


@pytest.fixture
def built():
    """``built(cls, type_name, name, options, base_dir=".")`` -> the connector
    ``cls`` loaded through its options schema and built by ``from_config``;
    closed after the test."""
    made = []

    def make(cls, type_name: str, name: str, options: dict, base_dir="."):
        spec = AdapterSpec(name=name, type=type_name, options=cls.options_schema().load(options),
                           base_dir=str(base_dir))
        made.append(adapter := cls.from_config(spec))
        return adapter

    yield make
    for adapter in made:
        adapter.close()


def config_problems(path) -> list[str]:
    """The problems ``load_config(path)`` reports (it must report some)."""
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.problems
