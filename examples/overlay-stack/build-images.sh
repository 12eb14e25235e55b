#!/usr/bin/env bash
# Builds `drover:local` and `whoami:local` without pulling anything: static binaries built
# here, copied into `FROM scratch` images. (With registry access, `docker build -t drover:local .`
# at the repository root builds the same drover image in a multi-stage build.)
#
#   examples/overlay-stack/build-images.sh            # release build (slow, small and fast)
#   PROFILE=dev examples/overlay-stack/build-images.sh   # debug build (quick)
#   PGO=1 examples/overlay-stack/build-images.sh       # drover with profile-guided optimisation
#                                                      # (.ci/pgo-build: needs wrk, h2load, curl)
set -euo pipefail
cd "$(dirname "$0")/../.."

profile="${PROFILE:-release}"
target="$(rustc -vV | sed -n 's/^host: //p')"
dir="$( [ "$profile" = dev ] && echo debug || echo "$profile")"
# Static glibc, so the image needs no libc (drover only connects to IPs and the Docker socket).
env "CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_RUSTFLAGS=-C target-feature=+crt-static" \
  cargo build --profile "$profile" --target "$target" -p drover --bin drover -p drover-e2e --example whoami
out="${CARGO_TARGET_DIR:-target}/$target/$dir"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

drover="$out/drover"
if [ "${PGO:-0}" = 1 ]; then
  drover="$(EXTRA_RUSTFLAGS='-C target-feature=+crt-static' .ci/pgo-build | tail -1)"
fi
strip -o "$ctx/drover" "$drover" 2>/dev/null || cp "$drover" "$ctx/drover"
cp examples/overlay-stack/drover.toml "$ctx/drover.toml"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY drover /drover
COPY drover.toml /etc/drover/drover.toml
EXPOSE 8080
ENTRYPOINT ["/drover"]
CMD ["--config", "/etc/drover/drover.toml"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t drover:local "$ctx"

rm -f "$ctx"/*
strip -o "$ctx/whoami" "$out/examples/whoami" 2>/dev/null || cp "$out/examples/whoami" "$ctx/whoami"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY whoami /whoami
EXPOSE 80
ENTRYPOINT ["/whoami", "--bind", "0.0.0.0", "--port", "80"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t whoami:local "$ctx"
echo "built drover:local and whoami:local"
