"""Every setting is documented: .env.example, the README table and compose.yaml agree."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def env_example_names():
    names = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.append(match.group(1))
    return names


def readme_table_names():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, flags=re.MULTILINE)


def test_readme_table_matches_env_example_line_for_line():
    assert readme_table_names() == env_example_names()


def test_compose_reads_every_documented_setting():
    compose = (ROOT / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose))
    used.discard("COMPOSE_PROJECT_NAME")
    assert used == set(env_example_names())


def test_env_example_defaults_match_compose_defaults():
    compose = (ROOT / "compose.yaml").read_text()
    settings = "\n".join(line for line in compose.splitlines() if not line.lstrip().startswith("#"))
    uses = re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}", settings)
    documented = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            documented[match.group(1)] = match.group(2)
    for name, default in uses:
        if name == "COMPOSE_PROJECT_NAME":
            continue
        # An unset file setting mounts /dev/null: "no file".
        allowed = {documented[name]} | ({"/dev/null"} if documented[name] == "" else set())
        assert default in allowed, name


def test_only_traefik_publishes_ports():
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert [name for name, s in services.items() if "ports" in s] == ["traefik"]


def test_every_running_service_is_healthchecked_and_restarts():
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        if "profiles" in service:
            continue  # build-only images
        assert "healthcheck" in service, name
        assert service.get("restart") == "unless-stopped", name
