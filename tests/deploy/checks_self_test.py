#!/usr/bin/python3
"""Shows that each deployment check fails when the rule it guards is broken.

usage: checks_self_test.py REPO_ROOT

Copies deploy/ and the files the checks read into a temporary root. Every
check must pass on the unchanged copy. Then each mutation below is applied
to a fresh copy, and the named check must fail with the expected message.
A mutation whose text no longer occurs exactly once fails too, so the
table follows edits of the deployment files.
"""

import pathlib
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
COPIED = [
    "deploy", ".dockerignore", "tools/install-deps.sh", "common/database_flags.cc",
    "services/auth/main.cc", "services/crm/main.cc",
]
CHECKS = {
    "k8s": [sys.executable, "-B", str(HERE / "check_k8s.py")],
    "docker": [sys.executable, "-B", str(HERE / "check_docker.py")],
    "systemd": [sys.executable, "-B", str(HERE / "check_systemd.py")],
    "systemd-analyze": [str(HERE / "systemd_analyze.sh")],
}

# (check, file, [(old text, new text)], expected part of the failure output)
MUTATIONS = [
    ("k8s", "deploy/k8s/auth-server.yaml", [("  replicas: 2\n", "  replicas: 1\n")],
     "replicas must be at least 2"),
    ("k8s", "deploy/k8s/crm-server.yaml", [("              memory: 1Gi\n", "")],
     "resources.limits.memory is missing"),
    ("k8s", "deploy/k8s/auth-server.yaml",
     [("          readinessProbe:\n            grpc:\n              port: 50051\n",
       "          readinessProbe:\n            tcpSocket:\n              port: 50051\n")],
     "readinessProbe must be a grpc probe"),
    ("k8s", "deploy/k8s/crm-server.yaml",
     [("          livenessProbe:\n            grpc:\n              port: 50052\n",
       "          livenessProbe:\n            grpc:\n              port: 50051\n")],
     "livenessProbe probes port 50051"),
    ("k8s", "deploy/k8s/crm-server.yaml",
     [("            runAsNonRoot: true\n            allowPrivilegeEscalation: false\n",
       "            runAsNonRoot: false\n            allowPrivilegeEscalation: false\n")],
     "runAsNonRoot must be true"),
    ("k8s", "deploy/k8s/auth-server.yaml",
     [("            readOnlyRootFilesystem: true\n", "            readOnlyRootFilesystem: false\n")],
     "readOnlyRootFilesystem must be true"),
    ("k8s", "deploy/k8s/auth-server.yaml", [("              drop: [\"ALL\"]\n", "              drop: [\"NET_RAW\"]\n")],
     "capabilities.drop must contain ALL"),
    ("k8s", "deploy/k8s/crm-server.yaml", [("      enableServiceLinks: false\n", "")],
     "enableServiceLinks must be false"),
    ("k8s", "deploy/k8s/crm-server.yaml",
     [("  clusterIP: None\n  selector:\n    app.kubernetes.io/name: crm-server\n",
       "  clusterIP: None\n  selector:\n    app.kubernetes.io/name: crm-srv\n")],
     "Deployment crm-server: no Service selects its pods"),
    ("k8s", "deploy/k8s/auth-server.yaml",
     [("  name: auth-internal\n  labels:\n    app.kubernetes.io/name: auth-server\n"
       "    app.kubernetes.io/part-of: crm-private-apps\nspec:\n  clusterIP: None\n",
       "  name: auth-internal\n  labels:\n    app.kubernetes.io/name: auth-server\n"
       "    app.kubernetes.io/part-of: crm-private-apps\nspec:\n")],
     "Service auth-internal: must be headless"),
    ("k8s", "deploy/k8s/crm-server.yaml", [("kind: PodDisruptionBudget\n", "kind: PodDisruptionBudgetDraft\n")],
     "Deployment crm-server: needs exactly one PodDisruptionBudget, found 0"),
    ("k8s", "deploy/k8s/auth-server.yaml", [("  minAvailable: 1\n", "  minAvailable: 2\n")],
     "or no node can be drained"),
    ("k8s", "deploy/k8s/crm-server.yaml", [("apiVersion: autoscaling/v2\n", "apiVersion: autoscaling/v1\n")],
     "apiVersion must be autoscaling/v2"),
    ("k8s", "deploy/k8s/crm-server.yaml", [("      terminationGracePeriodSeconds: 30\n",
                                            "      terminationGracePeriodSeconds: 12\n")],
     "terminationGracePeriodSeconds 12 must exceed"),
    ("k8s", "deploy/k8s/network-policy.yaml",
     [("    - from:\n        - podSelector:\n", "    - from:\n        - namespaceSelector: {}\n        - podSelector:\n")],
     "only a podSelector that matches the CRM pods alone is allowed"),
    ("k8s", "deploy/k8s/network-policy.yaml",
     [("              app.kubernetes.io/name: crm-server\n", "              app.kubernetes.io/name: auth-server\n")],
     "no NetworkPolicy admits the CRM pods"),
    ("k8s", "deploy/k8s/network-policy.yaml",
     [("    - from:\n        - podSelector:\n            matchLabels:\n"
       "              app.kubernetes.io/name: crm-server\n"
       "              app.kubernetes.io/part-of: crm-private-apps\n      ports:\n", "    - ports:\n")],
     "without 'from' admits every source"),
    ("k8s", "deploy/k8s/network-policy.yaml", [("          port: 50053\n", "          port: 50051\n")],
     "no NetworkPolicy admits the CRM pods to the auth port 50053"),
    ("k8s", "deploy/k8s/auth-server.yaml", [("            - name: internal\n", "            - name: tokens\n")],
     "needs a container port named internal"),
    ("k8s", "deploy/k8s/network-policy.yaml", [("    - Ingress\n", "    - Egress\n")],
     "no NetworkPolicy with policyTypes Ingress selects the auth pods"),
    ("k8s", "deploy/k8s/secrets.yaml",
     [("CRM_TOKEN_HMAC_KEY: REPLACE_ME_TOKEN_HMAC_KEY\n",
       "CRM_TOKEN_HMAC_KEY: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")],
     "CRM_TOKEN_HMAC_KEY is not a placeholder"),
    ("k8s", "deploy/k8s/config.yaml", [("  CRM_WORKER_THREADS: \"16\"\n", "  CRM_WORKERS: \"16\"\n")],
     "CRM_WORKERS is not a flag or secret variable of crm_server"),
    ("k8s", "deploy/k8s/config.yaml", [("dns:///auth-internal:50053", "dns:///auth-internl:50053")],
     "names Service auth-internl, which does not exist"),
    ("k8s", "deploy/k8s/kustomization.yaml", [("  - network-policy.yaml\n", "  - network-policy.yaml\n  - secrets.yaml\n")],
     "would overwrite the real keys"),
    ("k8s", "deploy/k8s/kustomization.yaml", [("  - network-policy.yaml\n", "")],
     "does not list network-policy.yaml"),
    ("docker", "deploy/docker/Dockerfile", [("libfmt9 libgrpc++1.51", "libfmt-dev libgrpc++1.51")],
     "installs libfmt-dev, a -dev package"),
    ("docker", "deploy/docker/Dockerfile", [("zlib1g libstdc++6", "zlib1g-runtime-nonexistent libstdc++6")],
     "package zlib1g-runtime-nonexistent is not in this machine's Debian 12"),
    ("docker", "deploy/docker/Dockerfile", [("USER 10001:10001\n", "USER root\n")],
     "USER is root"),
    ("docker", "deploy/docker/Dockerfile",
     [("HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 \\\n"
       "  CMD grpc_health_check \"127.0.0.1:${CRM_PORT:-50052}\"\n", "")],
     "image crm-server: HEALTHCHECK is missing"),
    ("docker", "deploy/docker/Dockerfile", [("libspdlog-dev ", "")],
     "does not install libspdlog-dev"),
    ("docker", "deploy/docker/Dockerfile", [("FROM debian:bookworm-slim AS runtime\n", "FROM debian:trixie-slim AS runtime\n")],
     "base image debian:trixie-slim is not Debian 12"),
    ("docker", "deploy/docker/Dockerfile", [("EXPOSE 50052 9452\n", "EXPOSE 8080 9452\n")],
     "EXPOSE 50052 is missing"),
    ("docker", "deploy/docker/Dockerfile", [("ENV CRM_LISTEN_HOST=0.0.0.0\n", "ENV CRM_LISTEN_HOST=127.0.0.1\n")],
     "CRM_LISTEN_HOST must be a non-loopback address"),
    ("docker", "deploy/docker/compose.yaml",
     [("      CRM_AUTH_TARGET: dns:///auth:50053\n",
       "      CRM_AUTH_TARGET: dns:///auth:50053\n      CRM_DB_PASSWORD: not-a-real-password\n")],
     "CRM_DB_PASSWORD is a secret written into compose.yaml"),
    ("docker", "deploy/docker/compose.yaml", [("\"127.0.0.1:50052:50052\"", "\"50052:50052\"")],
     "must be bound to 127.0.0.1"),
    ("docker", "deploy/docker/compose.yaml", [("target: crm-server\n", "target: crm\n")],
     "which the Dockerfile lacks"),
    ("docker", ".dockerignore", [("deploy/docker/secrets/\n", "")],
     ".dockerignore must exclude deploy/docker/secrets"),
    ("systemd", "deploy/systemd/crm-auth.service", [("NoNewPrivileges=yes\n", "NoNewPrivileges=no\n")],
     "NoNewPrivileges= must be yes"),
    ("systemd", "deploy/systemd/crm-data.service", [("ProtectSystem=strict\n", "ProtectSystem=full\n")],
     "ProtectSystem= must be strict"),
    ("systemd", "deploy/systemd/crm-auth.service",
     [("CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n")],
     "CapabilityBoundingSet= must be empty"),
    ("systemd", "deploy/systemd/crm-data.service", [("TimeoutStopSec=20s\n", "TimeoutStopSec=5s\n")],
     "TimeoutStopSec (5.0 s) must exceed"),
    ("systemd", "deploy/systemd/crm-data.service", [("CRM_DB_USER=crm_data", "CRM_DB_USERNAME=crm_data")],
     "CRM_DB_USERNAME is not a flag"),
    ("systemd", "deploy/systemd/auth.env.example",
     [("CRM_DB_PASSWORD=REPLACE_ME_AUTH_DB_PASSWORD\n", "CRM_DB_PASSWORD=correct-horse\n")],
     "CRM_DB_PASSWORD must be a REPLACE_ME placeholder"),
    ("systemd-analyze", "deploy/systemd/crm-auth.service", [("NoNewPrivileges=yes\n", "NoNewPrivilege=yes\n")],
     "Unknown key"),
    ("systemd-analyze", "deploy/systemd/crm-data.service",
     [("NoNewPrivileges=yes\n", ""), ("ProtectSystem=strict\n", ""), ("CapabilityBoundingSet=\n", ""),
      ("SystemCallFilter=@system-service\n", "")],
     "systemd-analyze security crm-data.service is above exposure"),
]


def copy_tree(source_root, target_root):
    for relative in COPIED:
        source = source_root / relative
        target = target_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.env", "__pycache__"))
        else:
            shutil.copy2(source, target)


def command_for(check, root):
    if check == "systemd-analyze":
        return CHECKS[check] + [str(root / "deploy" / "systemd")]
    return CHECKS[check] + [str(root)]


def main():
    if len(sys.argv) != 2:
        print("usage: checks_self_test.py REPO_ROOT", file=sys.stderr)
        return 2
    source_root = pathlib.Path(sys.argv[1]).resolve()
    have_systemd_analyze = shutil.which("systemd-analyze") is not None
    failures = []

    with tempfile.TemporaryDirectory() as temporary:
        baseline = pathlib.Path(temporary) / "baseline"
        copy_tree(source_root, baseline)
        for check in CHECKS:
            if check == "systemd-analyze" and not have_systemd_analyze:
                continue
            result = subprocess.run(command_for(check, baseline), capture_output=True, text=True)
            if result.returncode != 0:
                failures.append(f"{check} fails on the unchanged files:\n{result.stdout}{result.stderr}")

        for index, (check, relative, replacements, expected) in enumerate(MUTATIONS):
            label = f"mutation {index} ({check}, {relative})"
            if check == "systemd-analyze" and not have_systemd_analyze:
                print(f"not run: {label}, systemd-analyze not found")
                continue
            root = pathlib.Path(temporary) / f"mutation-{index}"
            copy_tree(source_root, root)
            path = root / relative
            text = path.read_text()
            applied = True
            for old, new in replacements:
                if text.count(old) != 1:
                    failures.append(f"{label}: {old!r} occurs {text.count(old)} times in {relative}, expected once; "
                                    "update the mutation table")
                    applied = False
                    break
                text = text.replace(old, new)
            if not applied:
                continue
            path.write_text(text)
            result = subprocess.run(command_for(check, root), capture_output=True, text=True)
            output = result.stdout + result.stderr
            if result.returncode != 1 or expected not in output:
                failures.append(f"{label}: expected exit 1 with {expected!r}, got exit {result.returncode}:\n{output}")
            else:
                print(f"caught: {label}: {expected}")
            shutil.rmtree(root)

    for failure in failures:
        print(f"FAIL: {failure}")
    if failures:
        return 1
    caught = sum(1 for m in MUTATIONS if m[0] != "systemd-analyze" or have_systemd_analyze)
    print(f"checks_self_test: all {caught} mutations that could run were caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
