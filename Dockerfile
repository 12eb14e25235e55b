# drover's image: a static binary on `scratch` (no shell, no libc, nothing to patch).
#
#   docker build -t drover .
#
# Multi-stage: the first stage needs the Rust image from a registry. On a machine that cannot
# pull, build the same image from a locally built binary instead (README, "Run drover in front
# of a stack": `cargo build` with crt-static, then the final stage below with `COPY drover`).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Static glibc: the image needs no libc. drover connects to IP addresses and the Docker socket,
# so it never needs NSS name resolution (which static glibc cannot do).
# `--build-arg PGO=1`: profile-guided optimisation (.ci/pgo-build trains an instrumented build
# on loopback first; about a quarter fewer instructions per proxied request).
ARG PGO=0
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && if [ "$PGO" = 1 ]; then \
      apt-get update -qq && apt-get install -y -qq wrk nghttp2-client curl python3 \
      && cp "$(EXTRA_RUSTFLAGS='-C target-feature=+crt-static' .ci/pgo-build | tail -1)" /drover; \
    else \
      RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" -p drover --bin drover \
      && cp "target/$target/release/drover" /drover; \
    fi

FROM scratch
COPY --from=build /drover /drover
COPY examples/overlay-stack/drover.toml /etc/drover/drover.toml
EXPOSE 8080
ENTRYPOINT ["/drover"]
CMD ["--config", "/etc/drover/drover.toml"]
