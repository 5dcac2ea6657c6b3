"""deploy/: every file parses, the Dockerfile copies what exists, compose is wired."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def test_there_are_yaml_files_to_check():
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"compose.yaml", "k8s/deployment.yaml", "k8s/hpa.yaml", "k8s/pdb.yaml",
            "k8s/configmap.yaml", "k8s/secret.yaml", "k8s/service.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_file_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs


def dockerfile_copies():
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY" and not any(p.startswith("--from") for p in parts):
            yield from (p for p in parts[1:-1] if not p.startswith("--"))


def test_every_path_the_dockerfile_copies_exists_in_the_build_context():
    sources = list(dockerfile_copies())
    assert {"setup.cfg", "pyproject.toml", "atp_bridge", "adapters"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"


def test_the_dockerignore_keeps_what_the_dockerfile_copies():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not ignored & set(dockerfile_copies())
    assert {"tests", ".git"} <= ignored


def test_the_runtime_image_is_slim_non_root_with_a_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2 and stages[-1] == "python:3.11-slim"
    runtime = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001", runtime, re.M)
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime and "urllib" in runtime
    assert "EXPOSE 8080" in runtime and "ATP_BRIDGE_BIND=0.0.0.0:8080" in runtime
    assert 'CMD ["atp-bridge", "serve"]' in runtime
    assert "apt-get" not in runtime and "gcc" not in runtime


def test_compose_runs_the_bridge_with_redis_and_the_demo_erp():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"bridge", "redis", "demo-erp"} <= set(services)
    build = services["bridge"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    for service in services.values():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            assert (DEPLOY / host).exists(), volume
    # every ${VAR} the mounted config needs is given by compose
    config_dir = DEPLOY / services["bridge"]["volumes"][0].split(":")[0]
    needed = set()
    for f in config_dir.rglob("*.yaml"):
        needed |= {m for m in re.findall(r"\$\{([A-Z_]+)\}", f.read_text())}
    assert needed <= set(services["bridge"]["environment"])
