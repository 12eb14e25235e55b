#!/usr/bin/env bash
# Installs what the test suite talks to, and nothing when it is all there already (then it
# takes well under a second):
#
#   tests/setup.sh && cargo test --workspace      # the README's test command; .ci/run runs it too
#
# The tests use real peers, not mocks: BIND 9 and nsupdate (DNS provider), a headless Chromium
# with chromedriver (the dashboard), curl, wrk (load across upgrades), and pinned Python
# tools: schemathesis and openapi-spec-validator (the admin API's OpenAPI document),
# prometheus_client (Prometheus' reference parser for /metrics), sslyze (the TLS scan) and
# grpcio (gRPC through drover). Written for Debian 12 with a Rust toolchain; system packages
# need root (or sudo).
set -euo pipefail

as_root=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "tests/setup.sh: installing needs root or sudo" >&2; exit 1; }
  as_root=(sudo)
fi

# System packages, each looked for by the program the tests run.
need=()
command -v curl >/dev/null || need+=(curl)
command -v wrk >/dev/null || need+=(wrk)   # load during zero-downtime upgrades (tests/upgrade.rs)
command -v htpasswd >/dev/null || need+=(apache2-utils)   # real htpasswd hashes (tests/middlewares.rs)
command -v named >/dev/null || [[ -x /usr/sbin/named ]] || need+=(bind9 bind9-utils)   # BIND 9
command -v nsupdate >/dev/null || need+=(bind9-dnsutils)   # Debian ships nsupdate apart from bind9-utils
command -v script >/dev/null || need+=(bsdutils)   # a pseudo-terminal for drover's coloured log (tests/log_output.rs)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
# Real TCP peers behind TCP routers (tests/tcp.rs) and the L4 benchmark's HAProxy.
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v pg_ctlcluster >/dev/null || need+=(postgresql-common)
# Let's Encrypt's test CA for the ACME tests (tests/acme.rs); `openssl` checks what it issued.
command -v pebble >/dev/null || need+=(pebble)
command -v openssl >/dev/null || need+=(openssl)
command -v pip3 >/dev/null || command -v pip >/dev/null || need+=(python3-pip)
if ((${#need[@]})); then
  echo "tests/setup.sh: installing ${need[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# Python tools, pinned.
py_need=()
command -v schemathesis >/dev/null || py_need+=(schemathesis==4.32.5)
python3 -c 'import openapi_spec_validator' 2>/dev/null || py_need+=(openapi-spec-validator==0.7.2)
python3 -c 'import prometheus_client' 2>/dev/null || py_need+=(prometheus_client==0.21.1)
command -v sslyze >/dev/null || py_need+=(sslyze==6.3.1)   # the TLS scan (tests/tls.rs)
# A real gRPC client and server (tests/grpc.rs); messages are raw bytes, so no protobuf codegen.
python3 -c 'import grpc' 2>/dev/null || py_need+=(grpcio==1.68.1)
if ((${#py_need[@]})); then
  echo "tests/setup.sh: installing ${py_need[*]}"
  pip=("${as_root[@]}" python3 -m pip install -q --disable-pip-version-check)
  # A Debian-managed Python refuses system-wide installs unless told to.
  "${pip[@]}" "${py_need[@]}" || "${pip[@]}" --break-system-packages "${py_need[@]}"
fi
