#!/usr/bin/env bash
# User-space instructions per proxied GET, under callgrind: the dependable CPU measure on a noisy
# machine (the count does not move with the neighbours). Needs valgrind, nginx, haproxy and h2load
# (apt-get install valgrind nginx-light haproxy nghttp2-client).
#
#   benches/callgrind.sh <drover-binary> [label]     # drover only, e.g. target/release/drover
#   PEERS=1 benches/callgrind.sh <drover-binary>     # drover, nginx and HAProxy side by side
#
# An nginx backend (not counted) answers "ok" on 127.0.0.1:19080; the proxy under callgrind (one
# worker, keep-alive to the backend, adding drover's forwarding headers: X-Forwarded-For,
# X-Real-IP, X-Forwarded-Proto, -Host, -Port) listens on :19081. 2,000 GETs warm up, the counters
# are zeroed, then 20,000 GETs over 16 keep-alive connections are counted: start-up and
# connection set-up are left out. Compare two drover binaries by running this for each,
# interleaved, twice or more.
# KEEP=<directory> keeps the callgrind outputs (see `cleanup`).
# ROUTES=file uses that routes file instead of the one plain router (it must route `/` to
# 127.0.0.1:19080), e.g. ROUTES=benches/middleware-chain.toml for the cost of a typical chain.
# H2TLS=1 counts HTTP/2 over TLS instead (an ECDSA P-256 certificate made with openssl; h2load
# -c10 -m10, ALPN h2; nginx with `ssl http2` on its listener, HAProxy `ssl alpn h2,http/1.1`):
# handshakes fall in the warm-up, so the count is the proxying of h2 streams and the record
# layer.
set -euo pipefail
shopt -s inherit_errexit
for tool in valgrind callgrind_control nginx h2load curl; do
  command -v "$tool" > /dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" > /dev/null ||
    { echo "callgrind.sh: $tool not found (apt-get install valgrind nginx-light haproxy nghttp2-client curl)" >&2; exit 2; }
done
bin=$(realpath "$1")
label=${2:-$(basename "$bin")}
dir=$(mktemp -d /tmp/drover-callgrind.XXXXXX)
PATH="$PATH:/usr/sbin"
requests=20000
# KEEP=<directory> keeps each proxy's callgrind output there (<label>.<proxy>.out), for
# `callgrind_annotate` to say where two counts differ.
cleanup() {
  kill "${vg:-}" "${ng:-}" 2>/dev/null || true; wait 2>/dev/null || true
  if [[ -n "${KEEP:-}" ]]; then
    mkdir -p "$KEEP"
    for out in "$dir"/*.out.1; do [[ -e "$out" ]] && cp "$out" "$KEEP/$label.$(basename "$out" .out.1).out"; done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

cat > "$dir/nginx.conf" <<NG
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19080; location / { return 200 "ok"; } } }
NG
nginx -c "$dir/nginx.conf" -p "$dir" & ng=$!

# Counts the proxy started by the command in "$@" under callgrind; prints instructions/request.
count() {
  local name=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$dir/$name.out" "$@" 2> "$dir/$name.valgrind" & vg=$!
  for _ in $(seq 1 300); do curl -sk -o /dev/null "$url" && break; sleep 0.2; done
  h2load "${load[@]}" -n 2000 "$url" > /dev/null
  callgrind_control -z "$vg" > /dev/null
  h2load "${load[@]}" -n "$requests" "$url" | grep -E "^requests:" >&2
  callgrind_control -d "$vg" > /dev/null
  kill "$vg"; wait "$vg" 2>/dev/null || true; vg=
  local total
  total=$(callgrind_annotate "$dir/$name.out.1" 2> /dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  echo $((total / requests))
}

if [[ -n "${H2TLS:-}" ]]; then
  url=https://127.0.0.1:19081/ load=(-t1 -c10 -m10) proto=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" \
    -days 7 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2> /dev/null
  cat "$dir/cert.pem" "$dir/key.pem" > "$dir/both.pem"
  tls_routes=$(printf '[http.routers.r.tls]\n[tls.stores.default.defaultCertificate]\ncertFile = "%s"\nkeyFile = "%s"\n' "$dir/cert.pem" "$dir/key.pem")
  nginx_listen="127.0.0.1:19081 ssl http2; ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem"
  haproxy_bind="127.0.0.1:19081 ssl crt $dir/both.pem alpn h2,http/1.1"
else
  url=http://127.0.0.1:19081/ load=(--h1 -c 16) proto=http tls_routes=""
  nginx_listen=127.0.0.1:19081 haproxy_bind=127.0.0.1:19081
fi

if [[ -n "${ROUTES:-}" ]]; then
  cp "$ROUTES" "$dir/routes.toml"
else
  printf '[http.routers.r]\nrule = "PathPrefix(`/`)"\nservice = "s"\n[[http.services.s.loadBalancer.servers]]\nurl = "http://127.0.0.1:19080"\n' > "$dir/routes.toml"
fi
[[ -n "$tls_routes" && -z "${ROUTES:-}" ]] && echo "$tls_routes" >> "$dir/routes.toml"
printf '[entryPoints.web]\naddress = "127.0.0.1:19081"\n[api]\naddress = "127.0.0.1:19082"\n[log]\nlevel = "warn"\n[providers.file]\nfilename = "%s"\n' "$dir/routes.toml" > "$dir/drover.toml"
drover=$(count drover "$bin" --config "$dir/drover.toml" --workers 1)
echo "$label: $drover instructions per request"
[[ -z "${PEERS:-}" ]] && exit 0

# nginx as the proxy: one process (no master), the upstream kept alive.
mkdir -p "$dir/px"
cat > "$dir/px/nginx.conf" <<NG
worker_processes 1; daemon off; master_process off; pid $dir/px/nginx.pid; error_log $dir/px/nginx.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:19080; keepalive 64; keepalive_requests 1000000; }
  server { listen $nginx_listen; location / {
    proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header Host \$http_host;
    proxy_set_header X-Forwarded-For \$remote_addr;
    proxy_set_header X-Real-IP \$remote_addr;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$http_host;
    proxy_set_header X-Forwarded-Port \$server_port; } } }
NG
nginx_count=$(count nginx nginx -c "$dir/px/nginx.conf" -p "$dir/px")
echo "nginx: $nginx_count instructions per request"

cat > "$dir/haproxy.cfg" <<HA
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind $haproxy_bind
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto $proto
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    default_backend backend
backend backend
    server b1 127.0.0.1:19080
HA
haproxy_count=$(count haproxy haproxy -db -f "$dir/haproxy.cfg")
echo "haproxy: $haproxy_count instructions per request"
awk -v d="$drover" -v n="$nginx_count" -v h="$haproxy_count" \
  'BEGIN { printf "drover/nginx %.2fx, drover/HAProxy %.2fx\n", d / n, d / h }'
