"""deploy/k8s: probes hit real routes, the ConfigMap is a valid config dir, and
the Deployment, Secret, Service, HPA and PDB agree with each other."""
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from atp_bridge import create_app
from atp_bridge.cli import main

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


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


def test_the_kustomization_lists_every_manifest():
    listed = set(manifest("kustomization.yaml")["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


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
