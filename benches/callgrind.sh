#!/usr/bin/env bash
# User-space instructions per proxied GET, under callgrind: the dependable CPU measure on a noisy
# machine (the count does not move with the neighbours). Needs valgrind, nginx and h2load
# (apt-get install valgrind nginx-light nghttp2-client).
#
#   benches/callgrind.sh <drover-binary> [label]     # e.g. target/release/drover
#
# nginx answers "ok" on 127.0.0.1:19080; drover (1 worker, file provider) proxies it on :19081.
# 2,000 GETs warm up, the counters are zeroed, then 20,000 GETs over 16 keep-alive connections
# are counted. Compare two binaries by running this for each, interleaved, twice or more.
# ROUTES=file uses that routes file instead of the one plain router (it must route `/` to
# 127.0.0.1:19080), e.g. ROUTES=benches/middleware-chain.toml for the cost of a typical chain.
set -euo pipefail
bin=$(realpath "$1")
label=${2:-$(basename "$bin")}
dir=$(mktemp -d /tmp/drover-callgrind.XXXXXX)
cleanup() { kill "${vg:-}" "${ng:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

cat > "$dir/nginx.conf" <<NG
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:19080; location / { return 200 "ok"; } } }
NG
nginx -c "$dir/nginx.conf" -p "$dir" & ng=$!
if [[ -n "${ROUTES:-}" ]]; then
  cp "$ROUTES" "$dir/routes.toml"
else
  printf '[http.routers.r]\nrule = "PathPrefix(`/`)"\nservice = "s"\n[[http.services.s.loadBalancer.servers]]\nurl = "http://127.0.0.1:19080"\n' > "$dir/routes.toml"
fi
printf '[entryPoints.web]\naddress = "127.0.0.1:19081"\n[api]\naddress = "127.0.0.1:19082"\n[log]\nlevel = "warn"\n[providers.file]\nfilename = "%s"\n' "$dir/routes.toml" > "$dir/drover.toml"

valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" --config "$dir/drover.toml" --workers 1 2> "$dir/valgrind.err" & vg=$!
for _ in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:19081/ && break; sleep 0.2; done
h2load --h1 -n 2000 -c 16 http://127.0.0.1:19081/ > /dev/null
callgrind_control -z "$vg" > /dev/null
h2load --h1 -n 20000 -c 16 http://127.0.0.1:19081/ | grep -E "^requests:"
callgrind_control -d "$vg" > /dev/null
total=$(callgrind_annotate "$dir/cg.out.1" 2> /dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "$label: $((total / 20000)) instructions per request ($total for 20,000)"
