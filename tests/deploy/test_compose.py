"""deploy/compose.yaml against the Compose Specification's JSON schema.

The schema is vendored as tests/deploy/compose-spec.json (source repository,
path and commit in tests/deploy/README.md). It is strict: an unknown key in a
service, build, healthcheck, ... is an error, as it is for `docker compose`.
"""
import copy
import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

try:
    import jsonschema
    from jsonschema.exceptions import best_match
except ImportError:  # a loud failure in every test below, never a skip
    jsonschema = None

HERE = Path(__file__).resolve().parent
COMPOSE = HERE.parents[1] / "deploy" / "compose.yaml"
SCHEMA = HERE / "compose-spec.json"


@pytest.fixture(scope="module")
def validator():
    if jsonschema is None:
        pytest.fail("jsonschema is not installed: pip install -e '.[test]' (or pip install 'jsonschema>=4.23')",
                    pytrace=False)
    schema = json.loads(SCHEMA.read_text())
    # its "$schema" lacks the "#" that jsonschema's draft lookup needs: name the draft ourselves
    assert schema["$schema"].rstrip("#") == "https://json-schema.org/draft-07/schema"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def compose_errors(validator, doc) -> list[str]:
    """Every schema violation as "dotted.path: message" (the most specific
    branch of a oneOf, not the whole service dumped back)."""
    errors = (best_match([e]) for e in validator.iter_errors(doc))
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors)


@pytest.fixture
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_the_vendored_schema_is_the_cited_file_unmodified():
    cited = re.search(r"git blob id is\s+`([0-9a-f]{40})`", (HERE / "README.md").read_text()).group(1)
    data = SCHEMA.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == cited


def test_compose_yaml_is_valid_against_the_compose_specification(validator, compose):
    assert [f"deploy/compose.yaml: {e}" for e in compose_errors(validator, compose)] == []


@pytest.mark.parametrize("break_it, error", [
    (lambda c: c["services"]["bridge"].update(stop_grace_priod="30s"),
     "services.bridge: 'stop_grace_priod' does not match any of the regexes: '^x-'"),
    (lambda c: c["services"]["bridge"]["build"].update(dockerfil="Dockerfile"),
     "services.bridge.build: 'dockerfil' does not match any of the regexes: '^x-'"),
    (lambda c: c["services"]["redis"]["healthcheck"].update(retries=[10]),
     "services.redis.healthcheck.retries: [10] is not of type 'number', 'string'"),
    (lambda c: c["services"]["bridge"]["depends_on"]["redis"].update(condition="healthy"),
     "services.bridge.depends_on.redis.condition: 'healthy' is not one of "
     "['service_started', 'service_healthy', 'service_completed_successfully']"),
    (lambda c: c.update(service=c.pop("services")),
     "(top level): 'service' does not match any of the regexes: '^x-'"),
], ids=["unknown-service-key", "unknown-build-key", "wrong-type", "wrong-enum", "misspelt-top-level-key"])
def test_a_broken_copy_of_compose_yaml_is_rejected(validator, compose, break_it, error):
    broken = copy.deepcopy(compose)
    break_it(broken)
    assert compose_errors(validator, broken) == [error]
