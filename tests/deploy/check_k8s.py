#!/usr/bin/python3
"""Checks the Kubernetes manifests in deploy/k8s against the deployment rules.

usage: check_k8s.py REPO_ROOT

Each Deployment must have:
- at least 2 replicas, and CPU and memory requests and limits;
- gRPC startup, readiness and liveness probes on the container's gRPC port;
- non-root, a read-only root file system, no privilege escalation and all
  capabilities dropped, with Service links off;
- a drain that fits the termination grace period, and only CRM_* variables
  that the server reads;
- a headless Service, a PodDisruptionBudget that allows one eviction and an
  autoscaling/v2 HorizontalPodAutoscaler.
The auth container must also expose the server's internal (TokenService)
port as a port named internal. Across files, the NetworkPolicy must admit
only CRM pods to that port, and the CRM server's auth target must be the
headless internal auth Service on it. Every Secret must contain placeholders only, and
kustomization.yaml must apply every manifest except the Secrets.
"""

import base64
import binascii
import pathlib
import re
import sys

from deploy_common import (Checker, yaml, default_internal_port, default_port, environment_names,
                           shutdown_grace_seconds)

# Deployment name -> the server binary it runs.
SERVERS = {"auth-server": "auth_server", "crm-server": "crm_server"}
PLACEHOLDER_PREFIX = "REPLACE_ME"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
QUANTITY_SUFFIXES = {
    "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}


def parse_quantity(value):
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    if match is None or match.group(2) not in QUANTITY_SUFFIXES:
        raise ValueError(f"invalid quantity {value!r}")
    return float(match.group(1)) * QUANTITY_SUFFIXES[match.group(2)]


def labels_match(selector_labels, pod_labels):
    """True when a matchLabels selector selects pods with `pod_labels`."""
    return all(pod_labels.get(key) == value for key, value in (selector_labels or {}).items())


def load_documents(k8s_dir, checker):
    """Returns [(file name, document)] for every manifest except kustomization.yaml."""
    documents = []
    for path in sorted(k8s_dir.glob("*.y*ml")):
        if path.name == "kustomization.yaml":
            continue
        try:
            loaded = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        except yaml.YAMLError as error:
            checker.fail(f"{path.name}: invalid YAML: {error}")
            continue
        for doc in loaded:
            ok = checker.check(isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind")
                               and (doc.get("metadata") or {}).get("name"),
                               f"{path.name}: every document needs apiVersion, kind and metadata.name")
            if ok:
                documents.append((path.name, doc))
    return documents


def check_kustomization(k8s_dir, documents, checker):
    path = k8s_dir / "kustomization.yaml"
    if not checker.check(path.exists(), "deploy/k8s/kustomization.yaml is missing"):
        return
    resources = set(yaml.safe_load(path.read_text()).get("resources") or [])
    files = {name for name, _ in documents}
    secret_files = {name for name, doc in documents if doc["kind"] == "Secret"}
    for name in sorted(resources):
        checker.check((k8s_dir / name).exists(), f"kustomization.yaml lists {name}, which does not exist")
        checker.check(name not in secret_files,
                      f"kustomization.yaml applies {name}, which contains a Secret; applying it would "
                      "overwrite the real keys with placeholders")
    for name in sorted(files - secret_files - resources):
        checker.fail(f"kustomization.yaml does not list {name}, so kubectl apply -k skips it")


def by_kind(documents, kind):
    return [doc for _, doc in documents if doc["kind"] == kind]


def find_named(documents, kind, name):
    for doc in by_kind(documents, kind):
        if doc["metadata"]["name"] == name:
            return doc
    return None


def container_environment(container, documents, checker, context):
    """Returns {name: value or None for secrets} of the container's variables."""
    environment = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            config = find_named(documents, "ConfigMap", name)
            if checker.check(config is not None, f"{context}: envFrom names ConfigMap {name}, which no manifest defines"):
                environment.update({key: str(value) for key, value in (config.get("data") or {}).items()})
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            secret = find_named(documents, "Secret", name)
            if checker.check(secret is not None, f"{context}: envFrom names Secret {name}, which no manifest defines"):
                keys = set(secret.get("stringData") or {}) | set(secret.get("data") or {})
                environment.update({key: None for key in keys})
    for variable in container.get("env") or []:
        reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if reference:
            secret = find_named(documents, "Secret", reference["name"])
            keys = set((secret or {}).get("stringData") or {}) | set((secret or {}).get("data") or {})
            checker.check(reference["key"] in keys,
                          f"{context}: {variable['name']} reads key {reference['key']} of Secret "
                          f"{reference['name']}, which no manifest defines")
            environment[variable["name"]] = None
        else:
            environment[variable["name"]] = variable.get("value")
    return environment


def check_container(root, server, container, pod_spec, documents, checker, context):
    """Checks one server container; returns its ports by name."""
    ports = {port.get("name"): port["containerPort"] for port in container.get("ports") or []}
    grpc_port = ports.get("grpc")
    checker.check(grpc_port is not None, f"{context}: needs a container port named grpc")

    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            checker.check(resource in (resources.get(kind) or {}), f"{context}: resources.{kind}.{resource} is missing")
    for resource in ("cpu", "memory"):
        request = (resources.get("requests") or {}).get(resource)
        limit = (resources.get("limits") or {}).get(resource)
        if request is not None and limit is not None:
            checker.check(parse_quantity(request) <= parse_quantity(limit),
                          f"{context}: {resource} request {request} is above its limit {limit}")

    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(probe_name)
        if not checker.check(probe is not None, f"{context}: {probe_name} is missing"):
            continue
        grpc = probe.get("grpc")
        if checker.check(grpc is not None, f"{context}: {probe_name} must be a grpc probe on the health service"):
            checker.check(grpc.get("port") == grpc_port,
                          f"{context}: {probe_name} probes port {grpc.get('port')}, the gRPC port is {grpc_port}")

    pod_security = pod_spec.get("securityContext") or {}
    security = container.get("securityContext") or {}
    run_as_non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
    run_as_user = security.get("runAsUser", pod_security.get("runAsUser"))
    checker.check(run_as_non_root is True, f"{context}: runAsNonRoot must be true")
    checker.check(run_as_user != 0, f"{context}: runAsUser must not be 0")
    checker.check(security.get("readOnlyRootFilesystem") is True, f"{context}: readOnlyRootFilesystem must be true")
    checker.check(security.get("allowPrivilegeEscalation") is False, f"{context}: allowPrivilegeEscalation must be false")
    checker.check(security.get("privileged") is not True, f"{context}: must not be privileged")
    capabilities = security.get("capabilities") or {}
    checker.check("ALL" in (capabilities.get("drop") or []), f"{context}: capabilities.drop must contain ALL")
    checker.check(not capabilities.get("add"), f"{context}: must not add capabilities")

    environment = container_environment(container, documents, checker, context)
    known = environment_names(root, server)
    for name in sorted(environment):
        if name.startswith("CRM_"):
            checker.check(name in known, f"{context}: {name} is not a flag or secret variable of {server}; "
                                         "the server would ignore it")
    for name in sorted(known & {"CRM_TOKEN_ENCRYPTION_KEY", "CRM_TOKEN_HMAC_KEY", "CRM_PAGE_TOKEN_KEY",
                                "CRM_DB_PASSWORD"}):
        checker.check(name in environment and environment[name] is None,
                      f"{context}: {name} must come from a Secret")
    listen_host = environment.get("CRM_LISTEN_HOST")
    checker.check(listen_host is not None and listen_host not in LOOPBACK_HOSTS,
                  f"{context}: CRM_LISTEN_HOST must be set to a non-loopback address such as 0.0.0.0, "
                  "or probes and other pods cannot connect")
    configured_port = int(environment.get("CRM_PORT") or default_port(root, server))
    checker.check(configured_port == grpc_port,
                  f"{context}: the server listens on {configured_port} but the grpc container port is {grpc_port}")
    if server == "auth_server":
        internal_port = int(environment.get("CRM_INTERNAL_PORT") or default_internal_port(root))
        checker.check(ports.get("internal") == internal_port,
                      f"{context}: the internal port {internal_port} (TokenService) needs a container port named "
                      f"internal, found {ports.get('internal')}")

    drain = shutdown_grace_seconds(root, server, environment)
    pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
    pre_stop_seconds = int(pre_stop[1]) if len(pre_stop) == 2 and pre_stop[0] == "sleep" else 0
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    checker.check(grace > pre_stop_seconds + drain,
                  f"{context}: terminationGracePeriodSeconds {grace} must exceed the preStop sleep "
                  f"({pre_stop_seconds} s) plus the server's SIGTERM drain ({drain} s)")
    return ports


def check_deployment(root, deployment, documents, checker):
    name = deployment["metadata"]["name"]
    server = SERVERS.get(name)
    if not checker.check(server is not None, f"Deployment {name}: unknown; expected one of {sorted(SERVERS)}"):
        return None
    spec = deployment["spec"]
    template = spec["template"]
    labels = template["metadata"].get("labels") or {}
    pod_spec = template["spec"]

    checker.check(spec.get("replicas", 1) >= 2, f"Deployment {name}: replicas must be at least 2")
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    checker.check(selector and labels_match(selector, labels),
                  f"Deployment {name}: selector.matchLabels must be non-empty and match the pod labels")
    checker.check(pod_spec.get("enableServiceLinks") is False,
                  f"Deployment {name}: enableServiceLinks must be false, or a Service named crm would set CRM_PORT")
    checker.check(pod_spec.get("automountServiceAccountToken") is False,
                  f"Deployment {name}: automountServiceAccountToken must be false; the servers do not call the API")
    seccomp = ((pod_spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    checker.check(seccomp == "RuntimeDefault", f"Deployment {name}: seccompProfile must be RuntimeDefault")

    containers = pod_spec.get("containers") or []
    checker.check(len(containers) == 1, f"Deployment {name}: expected exactly one container")
    ports = {}
    for container in containers:
        ports = check_container(root, server, container, pod_spec, documents, checker,
                                f"Deployment {name} container {container.get('name')}")
    grpc_port = ports.get("grpc")

    services = [s for s in by_kind(documents, "Service")
                if s["spec"].get("selector") and labels_match(s["spec"]["selector"], labels)]
    checker.check(services, f"Deployment {name}: no Service selects its pods")
    for service in services:
        service_name = service["metadata"]["name"]
        checker.check(service["spec"].get("clusterIP") == "None",
                      f"Service {service_name}: must be headless (clusterIP: None) for client-side round robin")
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            checker.check(target in set(ports) | set(ports.values()),
                          f"Service {service_name}: targetPort {target} is not a container port of {name}")

    budgets = [b for b in by_kind(documents, "PodDisruptionBudget")
               if labels_match((b["spec"].get("selector") or {}).get("matchLabels"), labels)
               and (b["spec"].get("selector") or {}).get("matchLabels")]
    if checker.check(len(budgets) == 1, f"Deployment {name}: needs exactly one PodDisruptionBudget, found {len(budgets)}"):
        budget = budgets[0]["spec"]
        if "minAvailable" in budget:
            checker.check(isinstance(budget["minAvailable"], int) and budget["minAvailable"] < spec.get("replicas", 1),
                          f"Deployment {name}: PodDisruptionBudget minAvailable must be a number below replicas, "
                          "or no node can be drained")
        else:
            checker.check(budget.get("maxUnavailable", 0) not in (0, "0%"),
                          f"Deployment {name}: PodDisruptionBudget must allow at least one eviction")

    autoscalers = [h for h in by_kind(documents, "HorizontalPodAutoscaler")
                   if (h["spec"].get("scaleTargetRef") or {}).get("kind") == "Deployment"
                   and h["spec"]["scaleTargetRef"].get("name") == name]
    if checker.check(len(autoscalers) == 1, f"Deployment {name}: needs exactly one HorizontalPodAutoscaler, "
                                            f"found {len(autoscalers)}"):
        autoscaler = autoscalers[0]
        checker.check(autoscaler["apiVersion"] == "autoscaling/v2",
                      f"HorizontalPodAutoscaler of {name}: apiVersion must be autoscaling/v2")
        minimum = autoscaler["spec"].get("minReplicas", 1)
        checker.check(minimum >= 2, f"HorizontalPodAutoscaler of {name}: minReplicas must be at least 2")
        checker.check(autoscaler["spec"].get("maxReplicas", 0) >= minimum,
                      f"HorizontalPodAutoscaler of {name}: maxReplicas must be at least minReplicas")
        checker.check(autoscaler["spec"].get("metrics"), f"HorizontalPodAutoscaler of {name}: needs metrics")
    return labels, ports


def rule_covers_port(rule, port):
    ports = rule.get("ports") or []
    if not ports:
        return True  # a rule without ports admits every port
    for entry in ports:
        number = entry.get("port")
        if number is None or number in ("grpc", "internal"):
            return True
        if isinstance(number, int) and number <= port <= entry.get("endPort", number):
            return True
    return False


def check_network_policy(documents, auth_labels, auth_port, crm_labels, checker):
    policies = []
    for policy in by_kind(documents, "NetworkPolicy"):
        selector = policy["spec"].get("podSelector") or {}
        checker.check(not selector.get("matchExpressions"),
                      f"NetworkPolicy {policy['metadata']['name']}: use podSelector.matchLabels only, "
                      "which this check can evaluate")
        if labels_match(selector.get("matchLabels"), auth_labels):
            policies.append(policy)
    isolating = [p for p in policies
                 if "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])]
    checker.check(isolating, "no NetworkPolicy with policyTypes Ingress selects the auth pods, "
                             "so every pod can reach the auth server")
    admitted_crm = False
    for policy in isolating:
        name = policy["metadata"]["name"]
        for rule in policy["spec"].get("ingress") or []:
            if not rule_covers_port(rule, auth_port):
                continue
            peers = rule.get("from") or []
            checker.check(peers, f"NetworkPolicy {name}: an ingress rule on port {auth_port} without 'from' "
                                 "admits every source")
            for peer in peers:
                pod_labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                only_crm = (set(peer) == {"podSelector"} and pod_labels
                            and not peer["podSelector"].get("matchExpressions")
                            and labels_match(pod_labels, crm_labels) and not labels_match(pod_labels, auth_labels))
                checker.check(only_crm, f"NetworkPolicy {name}: admits {peer} to the auth port {auth_port}; "
                                        "only a podSelector that matches the CRM pods alone is allowed")
                admitted_crm = admitted_crm or bool(only_crm)
    checker.check(admitted_crm, f"no NetworkPolicy admits the CRM pods to the auth port {auth_port}")


def check_auth_target(documents, auth_labels, auth_port, checker):
    config = find_named(documents, "ConfigMap", "crm-server-config") or {}
    target = (config.get("data") or {}).get("CRM_AUTH_TARGET", "")
    match = re.fullmatch(r"dns:///([a-z0-9.-]+):(\d+)", target)
    if not checker.check(match, f"crm-server-config: CRM_AUTH_TARGET {target!r} must be dns:///SERVICE:PORT, "
                                "so the CRM server resolves every auth pod"):
        return
    service_name, port = match.group(1).split(".")[0], int(match.group(2))
    service = find_named(documents, "Service", service_name)
    if not checker.check(service is not None, f"CRM_AUTH_TARGET names Service {service_name}, which does not exist"):
        return
    checker.check(labels_match(service["spec"].get("selector"), auth_labels) and service["spec"].get("selector"),
                  f"Service {service_name}: must select the auth pods")
    checker.check(service["spec"].get("clusterIP") == "None", f"Service {service_name}: must be headless")
    # Headless Services do no port mapping: clients connect to the pod port.
    checker.check(port == auth_port, f"CRM_AUTH_TARGET port {port} is not the auth internal port {auth_port}")


def check_secrets(documents, checker):
    secrets = by_kind(documents, "Secret")
    checker.check(len(secrets) >= 2, "expected a Secret for the token keys and one for database credentials")
    for secret in secrets:
        name = secret["metadata"]["name"]
        values = dict(secret.get("stringData") or {})
        for key, encoded in (secret.get("data") or {}).items():
            try:
                values[key] = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                values[key] = encoded
        checker.check(values, f"Secret {name}: has no keys")
        for key, value in values.items():
            value = str(value)
            checker.check(value.startswith(PLACEHOLDER_PREFIX),
                          f"Secret {name}: {key} is not a placeholder starting with {PLACEHOLDER_PREFIX}; "
                          "never commit a real key or password")
            try:
                decoded_length = len(base64.b64decode(value, validate=True))
            except binascii.Error:
                decoded_length = -1
            checker.check(decoded_length != 32, f"Secret {name}: {key} decodes to 32 bytes, which a server would "
                                                "accept as a key; use a value the servers reject")
        annotations = secret["metadata"].get("annotations") or {}
        checker.check(annotations.get("crm-private-apps/placeholder") == "true",
                      f"Secret {name}: needs the annotation crm-private-apps/placeholder: \"true\"")

    for config in by_kind(documents, "ConfigMap"):
        for key in config.get("data") or {}:
            checker.check("PASSWORD" not in key and not key.endswith("_KEY"),
                          f"ConfigMap {config['metadata']['name']}: {key} looks like a secret; put it in a Secret")


def main():
    if len(sys.argv) != 2:
        print("usage: check_k8s.py REPO_ROOT", file=sys.stderr)
        return 2
    root = pathlib.Path(sys.argv[1])
    k8s_dir = root / "deploy" / "k8s"
    checker = Checker("check_k8s")
    documents = load_documents(k8s_dir, checker)
    check_kustomization(k8s_dir, documents, checker)

    names = [(doc["kind"], doc["metadata"]["name"]) for _, doc in documents]
    for kind, name in sorted(set(names)):
        checker.check(names.count((kind, name)) == 1, f"{kind} {name} is defined more than once")

    deployments = {d["metadata"]["name"]: d for d in by_kind(documents, "Deployment")}
    for name in SERVERS:
        checker.check(name in deployments, f"Deployment {name} is missing")
    pods = {}
    for name, deployment in deployments.items():
        result = check_deployment(root, deployment, documents, checker)
        if result:
            pods[name] = result

    if "auth-server" in pods and "crm-server" in pods:
        auth_labels, auth_ports = pods["auth-server"]
        crm_labels, _ = pods["crm-server"]
        # TokenService, which only CRM servers may reach.
        auth_port = auth_ports.get("internal")
        # A missing internal port is already reported by check_container.
        if auth_port is not None:
            check_network_policy(documents, auth_labels, auth_port, crm_labels, checker)
            check_auth_target(documents, auth_labels, auth_port, checker)
    check_secrets(documents, checker)
    checker.finish()


if __name__ == "__main__":
    sys.exit(main())
