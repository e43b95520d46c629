#!/usr/bin/python3
"""Checks the systemd units in deploy/systemd without running systemd.

usage: check_systemd.py REPO_ROOT

Each unit must run its server from /usr/local/bin, set the hardening
options (NoNewPrivileges, ProtectSystem=strict, ProtectHome, PrivateTmp,
DynamicUser or a non-root User, an empty CapabilityBoundingSet), read
secrets from an EnvironmentFile and the key file from a credential, restart
on failure, and stop with SIGTERM within a TimeoutStopSec longer than the
server's drain. Every CRM_* name in the units and the example environment
files must be a variable the server reads, and the examples hold
placeholders only. systemd_analyze.sh runs systemd's own checks.
"""

import pathlib
import re
import shlex
import sys

from deploy_common import Checker, environment_names, shutdown_grace_seconds

# Unit file -> (server binary, example environment file).
UNITS = {
    "crm-auth.service": ("auth_server", "auth.env.example"),
    "crm-data.service": ("crm_server", "crm.env.example"),
}
REQUIRED_SETTINGS = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
}


def parse_unit(path):
    """Returns {section: {key: [values in order]}}; later values override earlier ones."""
    sections = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_seconds(text):
    if re.fullmatch(r"\d+", text):
        return int(text)
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)\s*(min|ms|h|m|s)", text):
        total += float(number) * {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def check_unit(root, unit_path, server, example_path, checker):
    name = unit_path.name
    unit = parse_unit(unit_path)
    service = unit.get("Service", {})

    def last(key):
        values = service.get(key)
        return values[-1] if values else None

    checker.check(last("ExecStart") and last("ExecStart").split()[0] == f"/usr/local/bin/{server}",
                  f"{name}: ExecStart must run /usr/local/bin/{server}")
    for key, expected in REQUIRED_SETTINGS.items():
        checker.check(last(key) == expected, f"{name}: {key}= must be {expected}, is {last(key)}")
    user = last("User")
    checker.check(last("DynamicUser") == "yes" or (user and user not in ("root", "0")),
                  f"{name}: needs DynamicUser=yes or a dedicated non-root User=")
    checker.check(last("CapabilityBoundingSet") == "",
                  f"{name}: CapabilityBoundingSet= must be empty, so the server holds no capability")

    environment = {}
    for assignments in service.get("Environment", []):
        for assignment in shlex.split(assignments):
            key, _, value = assignment.partition("=")
            environment[key] = value
    checker.check(service.get("EnvironmentFile"), f"{name}: needs an EnvironmentFile= for the database password")
    credentials = [value.split(":")[0] for value in service.get("LoadCredential", [])]
    key_file = environment.get("CRM_KEY_FILE", "")
    checker.check(key_file.startswith("%d/") and key_file[3:] in credentials,
                  f"{name}: CRM_KEY_FILE must name a LoadCredential= credential as %d/NAME, is {key_file!r}")

    drain = shutdown_grace_seconds(root, server, environment)
    stop_timeout = parse_seconds(last("TimeoutStopSec") or "90s")
    checker.check(stop_timeout > drain,
                  f"{name}: TimeoutStopSec ({stop_timeout} s) must exceed the server's SIGTERM drain ({drain} s)")
    checker.check("multi-user.target" in unit.get("Install", {}).get("WantedBy", []),
                  f"{name}: [Install] WantedBy=multi-user.target is missing")

    known = environment_names(root, server)
    for key in environment:
        if key.startswith("CRM_"):
            checker.check(key in known, f"{name}: {key} is not a flag or secret variable of {server}")

    if not checker.check(example_path.exists(), f"{example_path.name} is missing"):
        return
    for line in example_path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        checker.check(key in known, f"{example_path.name}: {key} is not a flag or secret variable of {server}")
        if re.search(r"PASSWORD|_KEY$", key):
            checker.check(value.startswith("REPLACE_ME"), f"{example_path.name}: {key} must be a REPLACE_ME placeholder")


def main():
    if len(sys.argv) != 2:
        print("usage: check_systemd.py REPO_ROOT", file=sys.stderr)
        return 2
    root = pathlib.Path(sys.argv[1])
    unit_dir = root / "deploy" / "systemd"
    checker = Checker("check_systemd")
    found = {path.name for path in unit_dir.glob("*.service")}
    checker.check(found == set(UNITS), f"deploy/systemd has units {sorted(found)}, expected {sorted(UNITS)}")
    for unit_name, (server, example) in UNITS.items():
        if (unit_dir / unit_name).exists():
            check_unit(root, unit_dir / unit_name, server, unit_dir / example, checker)
    checker.finish()


if __name__ == "__main__":
    sys.exit(main())
