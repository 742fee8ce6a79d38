#!/usr/bin/env bash
# Packaging as users meet it, checked:
#   - `cargo install --path .` gives a working `hopline` (the README's install line);
#   - the systemd unit passes `systemd-analyze verify` (with the installed binary);
#   - the Dockerfile is built and run when a Docker daemon answers; otherwise it is parsed
#     (dockerfile-parse, in a throwaway venv) and held to its promises: two stages, the
#     binary copied from the build stage, a non-root user, SIGTERM to stop;
#   - the Kubernetes manifests parse and keep theirs: probes on the admin endpoint's /ready
#     and /healthz, a preStop pause and a drain that fit in the grace period, and a
#     configuration that `hopline check-config` accepts.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cargo install --path . --root "$work/root" --locked --quiet
bin="$work/root/bin/hopline"
"$bin" --version | grep -q "^hopline " || fail "the installed binary does not run"
echo "ok: cargo install --path . -> $("$bin" --version)"

if command -v systemd-analyze >/dev/null; then
    sed "s|/usr/local/bin/hopline|$bin|" deploy/systemd/hopline.service > "$work/hopline.service"
    systemd-analyze verify "$work/hopline.service" || fail "systemd-analyze verify"
    grep -q '^Type=notify$' deploy/systemd/hopline.service || fail "the unit does not wait for READY=1"
    echo "ok: deploy/systemd/hopline.service passes systemd-analyze verify (Type=notify, reload by SIGHUP)"
else
    echo "skip: systemd-analyze not here"
fi

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker build -q -t hopline:ci . >/dev/null
    docker run --rm hopline:ci --version | grep -q "^hopline " || fail "the image does not run"
    [ "$(docker inspect -f '{{.Config.User}}' hopline:ci)" = "nonroot:nonroot" ] || fail "the image runs as root"
    echo "ok: docker build and run"
else
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet dockerfile-parse
    "$work/venv/bin/python" - <<'PY'
from dockerfile_parse import DockerfileParser

parser = DockerfileParser(path="Dockerfile")
steps = parser.structure
stages = [s for s in steps if s["instruction"] == "FROM"]
assert len(stages) == 2, f"a build stage and a runtime stage, not {len(stages)}"
assert " AS " in stages[0]["value"].upper(), "the build stage is named"
runtime = steps[steps.index(stages[1]):]
by = lambda name: [s["value"] for s in runtime if s["instruction"] == name]
assert any(v.startswith("--from=build ") and "hopline" in v for v in by("COPY")), by("COPY")
users = by("USER")
assert users and not users[-1].startswith(("root", "0")), f"a non-root user, not {users}"
assert by("STOPSIGNAL") == ["SIGTERM"], by("STOPSIGNAL")
assert by("ENTRYPOINT"), "an entrypoint"
build = [s["value"] for s in steps[: steps.index(stages[1])] if s["instruction"] == "RUN"]
assert any("cargo build --release --locked" in v for v in build), build
print(f"ok: Dockerfile parsed (no Docker daemon here): 2 stages, runtime {stages[1]['value']}, USER {users[-1]}")
PY
fi

/usr/bin/python3 - "$bin" <<'PY'
import subprocess, sys, tempfile, yaml

bin = sys.argv[1]
docs = list(yaml.safe_load_all(open("deploy/kubernetes/proxy.yaml")))
kinds = {d["kind"]: d for d in docs}
assert set(kinds) == {"ConfigMap", "Deployment", "Service"}, set(kinds)
pod = kinds["Deployment"]["spec"]["template"]["spec"]
container = pod["containers"][0]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
config = kinds["ConfigMap"]["data"]["hopline.toml"]
with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
    f.write(config)
    f.flush()
    subprocess.run([bin, "check-config", f.name], check=True, capture_output=True)
drain = next(l for l in config.splitlines() if l.startswith("drain_timeout"))
drain = int(drain.split('"')[1].rstrip("s"))
grace = pod["terminationGracePeriodSeconds"]
assert pause + drain < grace, f"preStop {pause} s + drain {drain} s must fit in {grace} s"
assert f'0.0.0.0:{ports["admin"]}' in config and f'0.0.0.0:{ports["http"]}' in config
assert pod["securityContext"]["runAsNonRoot"] is True
service = kinds["Service"]["spec"]
assert service["ports"][0]["targetPort"] == "http"
print(f"ok: deploy/kubernetes/proxy.yaml: probes on /ready and /healthz, preStop {pause} s + drain {drain} s < grace {grace} s, configuration accepted by check-config")
PY
