#!/usr/bin/python3
"""Checks deploy/docker: the Dockerfile, the compose file and .dockerignore.

usage: check_docker.py REPO_ROOT
       check_docker.py REPO_ROOT --binaries BUILD_DIR

The first form checks the Dockerfile, compose.yaml and .dockerignore:
- every image is based on Debian 12, and every package the Dockerfile
  installs exists in Debian 12 (apt-cache show);
- the build stage has the -dev packages of tools/install-deps.sh;
- each image (auth-server, crm-server) installs no -dev package, runs as a
  numeric non-root USER, and has a HEALTHCHECK on its gRPC port, EXPOSE and
  an ENTRYPOINT;
- compose.yaml parses, builds both images, keeps secrets out of the file
  and binds ports to loopback;
- .dockerignore keeps secrets and build output out of the build context.

The second form checks that each image installs the Debian package of
every shared library that the built binaries in BUILD_DIR link directly.
It exits 77 (skipped) when the binaries are not built.
"""

import pathlib
import re
import shlex
import shutil
import subprocess
import sys

from deploy_common import (Checker, yaml, default_internal_port, default_port, environment_names,
                           shutdown_grace_seconds)

SKIPPED = 77
# Image target -> the server binary it runs.
IMAGES = {"auth-server": "auth_server", "crm-server": "crm_server"}
DEBIAN_12_IMAGES = {"debian:bookworm", "debian:bookworm-slim", "debian:12", "debian:12-slim"}
BUILD_TOOLS = {"build-essential", "cmake", "pkg-config", "protobuf-compiler", "protobuf-compiler-grpc"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Binary in the build folder -> the images that contain it.
BINARIES = {
    "services/auth/auth_server": ["auth-server"],
    "services/crm/crm_server": ["crm-server"],
    "tools/crmctl": ["auth-server"],
}


class Stage:
    def __init__(self, base, name):
        self.base = base
        self.name = name
        self.instructions = []  # (keyword, arguments)

    def arguments(self, keyword):
        return [arguments for key, arguments in self.instructions if key == keyword]


def parse_dockerfile(path):
    """Returns the stages of a Dockerfile, in order, with continuation lines
    joined and comment lines dropped, as Docker reads them."""
    logical_lines = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current:
            logical_lines.append(current)
        current = ""
    stages = []
    for line in logical_lines:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        arguments = arguments.strip()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, arguments))
    return stages


def apt_packages(command):
    """Returns the packages that `apt-get install` or `apt install` names in a RUN command."""
    packages = []
    for segment in re.split(r"&&|\|\||;|\|", command):
        words = shlex.split(segment)
        for index, word in enumerate(words):
            if word in ("apt-get", "apt") and "install" in words[index + 1:]:
                after = words[words.index("install", index) + 1:]
                packages += [w for w in after if not w.startswith("-")]
                break
    return packages


def stage_chain(stages, target):
    """Returns the stages an image target is made of, from its external base down."""
    by_name = {stage.name: stage for stage in stages if stage.name}
    chain = []
    stage = by_name.get(target)
    while stage is not None:
        chain.insert(0, stage)
        stage = by_name.get(stage.base)
    return chain


def install_deps_packages(root):
    text = (root / "tools" / "install-deps.sh").read_text()
    match = re.search(r"^packages=\(\n(.*?)^\)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise RuntimeError("cannot find the packages=( ... ) list in tools/install-deps.sh")
    return {word for line in match.group(1).splitlines() for word in line.split("#")[0].split()}


def packages_in_debian(packages):
    """Returns the subset of `packages` that this machine's apt package lists contain."""
    # One apt-cache call for all: each call loads the whole package cache.
    result = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(set(packages))],
                            capture_output=True, text=True)
    return set(re.findall(r"^Package: (\S+)$", result.stdout, re.MULTILINE))


def copied_files(chain):
    """Returns the base names of every file that the chain's COPY instructions name."""
    names = set()
    for stage in chain:
        for arguments in stage.arguments("COPY"):
            words = [w for w in arguments.split() if not w.startswith("--")]
            names |= {pathlib.PurePosixPath(w).name for w in words[:-1]}
    return names


def image_environment(chain):
    environment = {}
    for stage in chain:
        for arguments in stage.arguments("ENV"):
            for assignment in shlex.split(arguments):
                key, _, value = assignment.partition("=")
                environment[key] = value
    return environment


def check_dockerfile(root, checker):
    dockerfile = root / "deploy" / "docker" / "Dockerfile"
    if not checker.check(dockerfile.exists(), "deploy/docker/Dockerfile is missing"):
        return []
    stages = parse_dockerfile(dockerfile)
    names = {stage.name for stage in stages}
    for stage in stages:
        if stage.base not in names:
            checker.check(stage.base in DEBIAN_12_IMAGES,
                          f"stage {stage.name}: base image {stage.base} is not Debian 12 "
                          f"(one of {sorted(DEBIAN_12_IMAGES)})")

    if not checker.check(shutil.which("apt-cache"), "apt-cache is missing; the check needs Debian's apt"):
        return stages
    known = packages_in_debian(p for stage in stages for run in stage.arguments("RUN") for p in apt_packages(run))
    for stage in stages:
        for run in stage.arguments("RUN"):
            for package in apt_packages(run):
                checker.check(package in known,
                              f"stage {stage.name}: package {package} is not in this machine's Debian 12 "
                              "package lists (apt-cache show failed; run apt-get update if the lists are old)")

    build = next((stage for stage in stages if stage.name == "build"), None)
    if checker.check(build is not None, "the Dockerfile needs a stage named build"):
        built_with = {p for run in build.arguments("RUN") for p in apt_packages(run)}
        required = {p for p in install_deps_packages(root) if p.endswith("-dev") or p in BUILD_TOOLS}
        for package in sorted(required - built_with):
            checker.fail(f"stage build: does not install {package}, which tools/install-deps.sh lists for building")

    for target, server in IMAGES.items():
        chain = stage_chain(stages, target)
        if not checker.check(chain, f"the Dockerfile has no stage {target}"):
            continue
        context = f"image {target}"
        checker.check(all(stage.name != "build" for stage in chain), f"{context}: must not be based on the build stage")
        packages = [p for stage in chain for run in stage.arguments("RUN") for p in apt_packages(run)]
        checker.check(packages, f"{context}: installs no runtime library package")
        for package in packages:
            checker.check(not package.endswith("-dev"), f"{context}: installs {package}, a -dev package")

        users = [u for stage in chain for u in stage.arguments("USER")]
        user = users[-1] if users else "root"
        checker.check(re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user),
                      f"{context}: USER is {user}; use a numeric non-root UID, which Kubernetes runAsNonRoot "
                      "can verify")

        files = copied_files(chain)
        port = default_port(root, server)
        healthchecks = [h for stage in chain for h in stage.arguments("HEALTHCHECK")]
        if checker.check(healthchecks and healthchecks[-1].upper() != "NONE", f"{context}: HEALTHCHECK is missing"):
            command = healthchecks[-1].split(" CMD ", 1)[-1]
            program = shlex.split(command.strip("[]").replace(",", " "))[0]
            checker.check(program in files, f"{context}: HEALTHCHECK runs {program}, which no COPY puts in the image")
            checker.check(str(port) in command, f"{context}: HEALTHCHECK does not probe the server port {port}")

        exposed = {w.split("/")[0] for stage in chain for e in stage.arguments("EXPOSE") for w in e.split()}
        checker.check(str(port) in exposed, f"{context}: EXPOSE {port} is missing")

        entrypoints = [e for stage in chain for e in stage.arguments("ENTRYPOINT")]
        if checker.check(entrypoints, f"{context}: ENTRYPOINT is missing"):
            checker.check(entrypoints[-1].startswith("["),
                          f"{context}: ENTRYPOINT must use the exec form, so SIGTERM reaches the server")
            checker.check(server in entrypoints[-1] and server in files,
                          f"{context}: ENTRYPOINT must run {server}, copied from the build stage")

        environment = image_environment(chain)
        known = environment_names(root, server)
        for name in environment:
            if name.startswith("CRM_"):
                checker.check(name in known, f"{context}: ENV {name} is not a flag of {server}")
        checker.check(environment.get("CRM_LISTEN_HOST") not in LOOPBACK_HOSTS | {None},
                      f"{context}: ENV CRM_LISTEN_HOST must be a non-loopback address such as 0.0.0.0")
    return stages


def parse_seconds(text):
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(h|ms|m|s)", str(text)):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def check_compose(root, stages, checker):
    docker_dir = root / "deploy" / "docker"
    path = docker_dir / "compose.yaml"
    if not checker.check(path.exists(), "deploy/docker/compose.yaml is missing"):
        return
    try:
        compose = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        checker.fail(f"compose.yaml: invalid YAML: {error}")
        return
    services = compose.get("services") or {}
    checker.check("mariadb" in services, "compose.yaml: needs a mariadb service")
    stage_names = {stage.name for stage in stages}
    by_target = {}
    for name, service in services.items():
        build = service.get("build") or {}
        if isinstance(build, dict) and build.get("target"):
            by_target[build["target"]] = name
            checker.check(build["target"] in stage_names,
                          f"compose.yaml: service {name} builds target {build['target']}, which the Dockerfile lacks")
            dockerfile = (docker_dir / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve()
            checker.check(dockerfile.exists(), f"compose.yaml: service {name} builds {dockerfile}, which does not exist")

    for target, server in IMAGES.items():
        name = by_target.get(target)
        if not checker.check(name, f"compose.yaml: no service builds the {target} image"):
            continue
        service = services[name]
        context = f"compose.yaml service {name}"
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        known = environment_names(root, server)
        for key, value in environment.items():
            if key.startswith("CRM_"):
                checker.check(key in known, f"{context}: {key} is not a flag of {server}")
            checker.check(not re.search(r"PASSWORD|_KEY$|SECRET", key),
                          f"{context}: {key} is a secret written into compose.yaml; put it in an env file "
                          "under secrets/")
        env_files = service.get("env_file") or []
        env_files = [env_files] if isinstance(env_files, str) else env_files
        checker.check(env_files and all(str(f).startswith("secrets/") for f in env_files),
                      f"{context}: secrets must come from env files under deploy/docker/secrets/")
        for port in service.get("ports") or []:
            checker.check(str(port).startswith("127.0.0.1:"), f"{context}: port {port} must be bound to 127.0.0.1")
        checker.check(service.get("read_only") is True, f"{context}: read_only must be true")
        checker.check("ALL" in (service.get("cap_drop") or []), f"{context}: cap_drop must contain ALL")
        drain = shutdown_grace_seconds(root, server, {k: str(v) for k, v in environment.items()})
        checker.check(parse_seconds(service.get("stop_grace_period", "10s")) > drain,
                      f"{context}: stop_grace_period must exceed the server's SIGTERM drain ({drain} s)")

    crm = services.get(by_target.get("crm-server"), {})
    auth_name = by_target.get("auth-server")
    target = str((crm.get("environment") or {}).get("CRM_AUTH_TARGET", ""))
    expected = f"dns:///{auth_name}:{default_internal_port(root)}"
    checker.check(target == expected, f"compose.yaml: CRM_AUTH_TARGET is {target!r}, expected {expected!r}")
    checker.check(auth_name in (crm.get("depends_on") or {}), "compose.yaml: the CRM service must depend on auth")

    ignore = docker_dir / "secrets" / ".gitignore"
    checker.check(ignore.exists() and "*" in ignore.read_text().split(),
                  "deploy/docker/secrets/.gitignore must ignore everything, so secrets are never committed")


def check_dockerignore(root, checker):
    path = root / ".dockerignore"
    if not checker.check(path.exists(), ".dockerignore is missing, so the build context includes secrets"):
        return
    patterns = {line.strip().rstrip("/") for line in path.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for required in ("deploy/docker/secrets", ".git", "build"):
        checker.check(required in patterns, f".dockerignore must exclude {required}")


def package_of(library_path):
    """Returns the Debian package that contains a library file, or None."""
    resolved = pathlib.Path(library_path).resolve()
    candidates = {str(library_path), str(resolved)}
    for candidate in list(candidates):
        if candidate.startswith("/usr/"):
            candidates.add(candidate[len("/usr"):])
        else:
            candidates.add("/usr" + candidate)
    for candidate in sorted(candidates):
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split(":")[0].strip()
    return None


def check_runtime_libraries(root, build_dir, checker):
    missing = [b for b in BINARIES if not (build_dir / b).exists()]
    if missing:
        print(f"SKIPPED: {', '.join(missing)} not built in {build_dir}; build them to check the image libraries")
        sys.exit(SKIPPED)
    for tool in ("ldd", "dpkg"):
        if shutil.which(tool) is None:
            print(f"SKIPPED: {tool} is missing on this machine")
            sys.exit(SKIPPED)
    stages = parse_dockerfile(root / "deploy" / "docker" / "Dockerfile")
    for binary, targets in BINARIES.items():
        output = subprocess.run(["ldd", str(build_dir / binary)], capture_output=True, text=True, check=True).stdout
        needed = subprocess.run(["objdump", "-p", str(build_dir / binary)], capture_output=True, text=True,
                                check=True).stdout
        direct = set(re.findall(r"NEEDED\s+(\S+)", needed))
        paths = dict(re.findall(r"^\s*(\S+) => (\S+)", output, re.MULTILINE))
        for library in sorted(direct):
            path = paths.get(library)
            if not checker.check(path and path != "not", f"{binary}: ldd cannot find {library}"):
                continue
            package = package_of(path)
            if not checker.check(package, f"{binary}: no Debian package contains {path}"):
                continue
            package = package.split(",")[0]
            for target in targets:
                installed = {p for s in stage_chain(stages, target) for r in s.arguments("RUN") for p in apt_packages(r)}
                checker.check(package.split(":")[0] in installed,
                              f"image {target}: {binary} links {library} from package {package}, "
                              "which the image does not install")


def main():
    arguments = sys.argv[1:]
    if len(arguments) not in (1, 3) or (len(arguments) == 3 and arguments[1] != "--binaries"):
        print("usage: check_docker.py REPO_ROOT [--binaries BUILD_DIR]", file=sys.stderr)
        return 2
    root = pathlib.Path(arguments[0])
    if len(arguments) == 3:
        checker = Checker("check_docker --binaries")
        check_runtime_libraries(root, pathlib.Path(arguments[2]), checker)
    else:
        checker = Checker("check_docker")
        stages = check_dockerfile(root, checker)
        check_compose(root, stages, checker)
        check_dockerignore(root, checker)
    checker.finish()


if __name__ == "__main__":
    sys.exit(main())
