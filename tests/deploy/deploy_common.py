"""Shared helpers of the deployment checks: failure reporting and facts read
from the server sources (flag names, drain times), so the checks follow the
code instead of a copy of it."""

import pathlib
import re
import sys

try:
    import yaml  # noqa: F401  (re-exported for the check scripts)
except ImportError:
    sys.exit("python3-yaml is missing: run tools/install-deps.sh or apt-get install python3-yaml")

# Environment variables that common/secrets.cc reads besides the flags.
SECRET_VARIABLES = {"CRM_TOKEN_ENCRYPTION_KEY", "CRM_TOKEN_HMAC_KEY", "CRM_PAGE_TOKEN_KEY"}

# Source files that define each server's flags (ABSL_FLAG) and main().
SERVER_SOURCES = {
    "auth_server": ["common/database_flags.cc", "services/auth/main.cc"],
    "crm_server": ["common/database_flags.cc", "services/crm/main.cc"],
}

# ABSL_FLAG(type, name, default, help): captures the name and the default.
FLAG_PATTERN = re.compile(r"ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,\s*([^,]+),")


class Checker:
    """Collects failed checks so one run reports all of them."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.passed = 0

    def check(self, condition, message):
        if condition:
            self.passed += 1
        else:
            self.failures.append(message)
        return condition

    def fail(self, message):
        self.failures.append(message)

    def finish(self):
        for message in self.failures:
            print(f"FAIL: {message}")
        if self.failures:
            print(f"{self.name}: {len(self.failures)} of {len(self.failures) + self.passed} checks failed")
            sys.exit(1)
        print(f"{self.name}: all {self.passed} checks passed")
        sys.exit(0)


def read_flags(root, server):
    """Returns {flag name: default value text} for `server` from its sources."""
    flags = {}
    for relative in SERVER_SOURCES[server]:
        text = (pathlib.Path(root) / relative).read_text()
        for name, default in FLAG_PATTERN.findall(text):
            flags[name] = default.strip()
    return flags


def environment_names(root, server):
    """Returns every CRM_* variable that `server` reads."""
    names = {"CRM_" + name.upper() for name in read_flags(root, server)}
    return names | SECRET_VARIABLES


def default_port(root, server):
    return int(read_flags(root, server)["port"])


def default_internal_port(root):
    """The auth server's internal (TokenService) port."""
    return int(read_flags(root, "auth_server")["internal_port"])


def shutdown_grace_seconds(root, server, environment):
    """Returns how long `server` drains calls after SIGTERM, in seconds.

    auth_server has a fixed kShutdownGrace; crm_server reads
    --shutdown_grace_seconds, which `environment` may set."""
    if server == "crm_server":
        value = environment.get("CRM_SHUTDOWN_GRACE_SECONDS")
        if value is None:
            value = read_flags(root, server)["shutdown_grace_seconds"]
        return int(value)
    text = (pathlib.Path(root) / "services/auth/main.cc").read_text()
    match = re.search(r"kShutdownGrace\s*=\s*absl::Seconds\((\d+)\)", text)
    if match is None:
        raise RuntimeError("cannot find kShutdownGrace = absl::Seconds(N) in services/auth/main.cc; "
                           "update shutdown_grace_seconds() in tests/deploy/deploy_common.py")
    return int(match.group(1))
