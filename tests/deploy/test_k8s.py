"""deploy/k8s: every manifest is valid against the Kubernetes API schemas
(strict: unknown fields are errors), the kustomization lists exactly the
manifests, probes hit real routes, the ConfigMap is a valid config dir, and
the Deployment, Secret, Service, HPA and PDB agree with each other."""
import copy
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from atp_bridge import create_app
from atp_bridge.cli import main

try:
    import kubernetes_validate
except ImportError:  # a loud failure in the schema tests below, never a skip
    kubernetes_validate = None

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# Applied on their own, not by the kustomization: their kinds need a CRD that a
# bare cluster lacks (`kubectl apply -k` would fail on the whole set).
OPERATOR_MANIFESTS = ["prometheusrule.yaml"]
MANIFESTS = sorted(p.name for p in K8S.glob("*.yaml")
                   if p.name != "kustomization.yaml" and p.name not in OPERATOR_MANIFESTS)

# The Kubernetes version the manifests are validated for (README, "Kubernetes").
# Its schemas ship with kubernetes-validate>=1.37.0; an older package fails loudly.
KUBERNETES_VERSION = "1.37"

# Top-level fields of kustomize's Kustomization type (kubernetes-sigs/kustomize,
# api/types/kustomization.go at 04e51ad97bafe253f8860190c0e6f6e209a95620). kustomize
# decodes the file with DisallowUnknownFields: any other key fails `kubectl apply -k`.
KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "metadata", "openapi", "namePrefix", "nameSuffix", "namespace", "commonLabels",
    "labels", "commonAnnotations", "patchesStrategicMerge", "patchesJson6902", "patches", "images",
    "imageTags", "replacements", "replicas", "vars", "sortOptions", "resources", "components", "crds",
    "bases", "configMapGenerator", "secretGenerator", "helmGlobals", "helmCharts",
    "helmChartInflationGenerator", "generatorOptions", "configurations", "generators", "transformers",
    "validators", "inventory", "buildMetadata"}


def manifest(name):
    (doc,) = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return doc


@pytest.fixture(scope="module")
def deployment():
    return manifest("deployment.yaml")


@pytest.fixture(scope="module")
def container(deployment):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def schema_error(doc) -> str | None:
    """The first violation of the strict schema for doc's kind and apiVersion
    in KUBERNETES_VERSION, as "dotted.path: message"; None when doc is valid."""
    kv = kubernetes_validate
    if kv is None:
        pytest.fail("kubernetes-validate is not installed: pip install -e '.[test]' "
                    "(or pip install 'kubernetes-validate>=1.37.0')", pytrace=False)
    try:
        used = kv.validate(doc, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as e:
        return f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
    except kv.SchemaNotFoundError as e:  # a kind or apiVersion this Kubernetes does not serve
        return e.message
    except kv.utils.VersionNotSupportedError:
        pytest.fail(f"kubernetes-validate {kv.__version__} has no schemas for Kubernetes {KUBERNETES_VERSION}: "
                    "upgrade it (setup.cfg's test extra names the lower bound)", pytrace=False)
    assert used == KUBERNETES_VERSION, f"validated against Kubernetes {used}, not {KUBERNETES_VERSION}"
    return None


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_manifest_is_valid_for_the_stated_kubernetes_version_in_strict_mode(name):
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    assert docs, name
    problems = [f"deploy/k8s/{name}: {d.get('kind')}: {error}" for d in docs if (error := schema_error(d))]
    assert problems == []


@pytest.mark.parametrize("name, break_it, error", [
    ("deployment.yaml", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenesProbe={}),
     "spec.template.spec.containers.0: Additional properties are not allowed ('livenesProbe' was unexpected)"),
    ("deployment.yaml", lambda d: d["spec"].update(replicas="2"),
     "spec.replicas: '2' is not of type 'integer', 'null'"),
    ("service.yaml", lambda d: d["spec"]["ports"][0].update(port="80"),
     "spec.ports.0.port: '80' is not of type 'integer'"),
    ("configmap.yaml", lambda d: d.update(date=d.pop("data")),
     "(top level): Additional properties are not allowed ('date' was unexpected)"),
    ("pdb.yaml", lambda d: d.update(apiVersion="policy/v1beta1"),
     "Couldn't find schema for kind PodDisruptionBudget with api version policy/v1beta1 "
     f"for kubernetes version {KUBERNETES_VERSION}"),
], ids=["unknown-field", "wrong-type", "wrong-type-in-a-list", "misspelt-top-level-key", "removed-api-version"])
def test_a_broken_copy_of_a_manifest_is_rejected(name, break_it, error):
    broken = copy.deepcopy(manifest(name))
    break_it(broken)
    assert schema_error(broken) == error


def test_strict_mode_is_what_rejects_an_unknown_field():
    broken = copy.deepcopy(manifest("deployment.yaml"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert "'livenesProbe' was unexpected" in schema_error(broken)
    assert kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=False) == KUBERNETES_VERSION


def is_configmap_key(key: str) -> bool:
    """The API server's rule for ConfigMap and Secret keys (apimachinery
    IsConfigMapKey), which the JSON schemas do not carry."""
    return bool(re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", key)) and key not in (".", "..") \
        and not key.startswith("..")


def test_configmap_and_secret_keys_are_keys_the_api_server_accepts():
    keys = {name: list(manifest(name).get("data", {})) + list(manifest(name).get("stringData", {}))
            for name in ("configmap.yaml", "secret.yaml")}
    assert all(keys.values())
    assert {name: [k for k in ks if not is_configmap_key(k)] for name, ks in keys.items()} == \
        {"configmap.yaml": [], "secret.yaml": []}
    assert not is_configmap_key("adapters/10-erp.yaml") and is_configmap_key("10-erp.yaml")


def kustomization_problems(doc, manifests) -> list[str]:
    """What kustomize would refuse in deploy/k8s/kustomization.yaml, plus any
    manifest it leaves out (an unlisted file is never applied)."""
    problems = []
    if (doc.get("apiVersion"), doc.get("kind")) != ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
        problems.append(f"apiVersion, kind: expected kustomize.config.k8s.io/v1beta1 Kustomization, "
                        f"got {doc.get('apiVersion')} {doc.get('kind')}")
    problems += [f"{key}: not a Kustomization field" for key in sorted(set(doc) - KUSTOMIZATION_FIELDS)]
    resources = doc.get("resources") or []
    problems += [f"resources: {r!r} is not a file name" for r in resources if not isinstance(r, str)]
    resources = [r for r in resources if isinstance(r, str)]
    problems += [f"resources: {r} is listed twice" for r in sorted({r for r in resources if resources.count(r) > 1})]
    problems += [f"resources: {r} is not a manifest in deploy/k8s" for r in sorted(set(resources) - set(manifests))]
    problems += [f"resources: {m} is missing" for m in sorted(set(manifests) - set(resources))]
    return problems


def test_the_kustomization_is_valid_and_lists_every_manifest_once():
    assert MANIFESTS == ["configmap.yaml", "deployment.yaml", "hpa.yaml", "ingress.yaml", "pdb.yaml",
                         "secret.yaml", "service.yaml"]
    assert kustomization_problems(manifest("kustomization.yaml"), MANIFESTS) == []


@pytest.mark.parametrize("break_it, problem", [
    (lambda k: k.update(resource=k.pop("resources")),
     ["resource: not a Kustomization field"] + [f"resources: {m} is missing" for m in MANIFESTS]),
    (lambda k: k["resources"].remove("pdb.yaml"), ["resources: pdb.yaml is missing"]),
    (lambda k: k["resources"].append("service.yaml"), ["resources: service.yaml is listed twice"]),
    (lambda k: k["resources"].append("networkpolicy.yaml"),
     ["resources: networkpolicy.yaml is not a manifest in deploy/k8s"]),
    (lambda k: k.update(apiVersion="v1"),
     ["apiVersion, kind: expected kustomize.config.k8s.io/v1beta1 Kustomization, got v1 Kustomization"]),
], ids=["misspelt-field", "missing-file", "duplicate", "file-that-does-not-exist", "wrong-api-version"])
def test_a_broken_copy_of_the_kustomization_is_rejected(break_it, problem):
    broken = copy.deepcopy(manifest("kustomization.yaml"))
    break_it(broken)
    assert kustomization_problems(broken, MANIFESTS) == problem


def test_probes_point_at_routes_the_app_really_serves(container, config_file):
    app = create_app(str(config_file({"adapters": [{"name": "s", "type": "static"}]})))
    adapter = app.url_map.bind("localhost")
    probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        endpoint, _ = adapter.match(probe["path"], method="GET")
        assert endpoint in ("atp_bridge.healthz", "atp_bridge.readyz")
        assert probe["port"] in [p["name"] for p in container["ports"]]
    annotations = manifest("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert adapter.match(annotations["prometheus.io/path"], method="GET")[0] == "atp_bridge.prometheus_metrics"


def test_the_container_port_is_the_bind_port(container):
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ATP_BRIDGE_BIND"].rsplit(":", 1)[1] == str(container["ports"][0]["containerPort"])


def test_env_secret_refs_match_the_secret_keys(container):
    secret = manifest("secret.yaml")
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert refs and {r["name"] for r in refs} == {secret["metadata"]["name"]}
    assert {r["key"] for r in refs} == set(secret["stringData"])


def test_hpa_pdb_and_service_select_the_deployments_pods(deployment):
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb, svc, hpa = manifest("pdb.yaml"), manifest("service.yaml"), manifest("hpa.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_shutdown_is_graceful_and_the_pod_is_locked_down(deployment, container):
    pod = deployment["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    graceful = int({e["name"]: e.get("value") for e in container["env"]}["ATP_BRIDGE_GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + graceful
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def materialise_config(deployment, tmp_path) -> Path:
    """Write the ConfigMap's keys the way the Deployment's volume mounts them."""
    data = manifest("configmap.yaml")["data"]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    items = volume["configMap"]["items"]
    assert {i["key"] for i in items} == set(data), "every ConfigMap key is mounted"
    for item in items:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    return tmp_path


def test_the_configmap_mounted_as_a_directory_passes_check_config(deployment, container, tmp_path):
    """Needs the rest and redis adapters (branches rest, redis) to pass."""
    config_dir = materialise_config(deployment, tmp_path)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(manifest("secret.yaml")["stringData"])
    env["ATP_BRIDGE_CONFIG"] = str(config_dir)
    result = CliRunner().invoke(main, ["check-config"], env=env)
    assert result.exit_code == 0, result.output
    assert "replace-me" not in result.output  # secrets never printed


# The PrometheusRule CRD's openAPIV3Schema (prometheus-operator/prometheus-operator,
# example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml at
# 01fad0d64bee2ea20ff20200b86fc0f4ae2744d3, operator 0.82.2), written out as a JSON
# schema with its fields, types, patterns and required keys. additionalProperties
# false: kubectl's default strict field validation refuses unknown fields.
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                          r"(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUS_RULE_SCHEMA = {
    "type": "object", "required": ["spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "additionalProperties": False, "properties": {"groups": {
            "type": "array", "items": {
                "type": "object", "required": ["name"], "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1}, "interval": _DURATION, "labels": _STRINGS,
                    "limit": {"type": "integer"}, "query_offset": _DURATION,
                    "partial_response_strategy": {"type": "string", "pattern": "^(?i)(abort|warn)?$"},
                    "rules": {"type": "array", "items": {
                        "type": "object", "required": ["expr"], "additionalProperties": False,
                        "properties": {
                            "alert": {"type": "string"}, "record": {"type": "string"},
                            "expr": {"type": ["integer", "string"]}, "for": _DURATION,
                            "keep_firing_for": dict(_DURATION, minLength=1),
                            "labels": _STRINGS, "annotations": _STRINGS}}}}}}}}}}


def prometheus_rule_errors(doc) -> list[str]:
    """Violations of the PrometheusRule CRD schema, as "dotted.path: message"."""
    import jsonschema

    errors = jsonschema.Draft202012Validator(PROMETHEUS_RULE_SCHEMA).iter_errors(doc)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors)


def test_the_prometheusrule_is_valid_for_the_operators_crd_and_applied_on_its_own():
    doc = manifest("prometheusrule.yaml")
    assert prometheus_rule_errors(doc) == []
    assert len(doc["spec"]["groups"]) == 2 and doc["metadata"]["name"] == "atp-bridge"
    # not in the kustomization: a cluster without the Operator would refuse `kubectl apply -k`
    assert kustomization_problems(manifest("kustomization.yaml"), MANIFESTS + OPERATOR_MANIFESTS) == \
        ["resources: prometheusrule.yaml is missing"]


@pytest.mark.parametrize("break_it, error", [
    (lambda d: d["spec"]["groups"][1]["rules"][0].update({"for": "5 minutes"}),
     "spec.groups.1.rules.0.for: '5 minutes' does not match"),
    (lambda d: d["spec"]["groups"][0]["rules"][0].update(expression=d["spec"]["groups"][0]["rules"][0].pop("expr")),
     "spec.groups.0.rules.0: 'expr' is a required property"),
    (lambda d: d["spec"]["groups"][1]["rules"][0]["labels"].update(severity=1),
     "spec.groups.1.rules.0.labels.severity: 1 is not of type 'string'"),
], ids=["bad-duration", "misspelt-expr", "label-not-a-string"])
def test_a_broken_copy_of_the_prometheusrule_is_rejected(break_it, error):
    broken = copy.deepcopy(manifest("prometheusrule.yaml"))
    break_it(broken)
    assert [e for e in prometheus_rule_errors(broken) if e.startswith(error)], prometheus_rule_errors(broken)
