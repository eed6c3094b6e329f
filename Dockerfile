# syntax=docker/dockerfile:1
#
# irsa-proxy image: docker build -t irsa-proxy .
# The webhook's image (it needs the tools): docker build --build-arg FEATURES=tools -t irsa-proxy-webhook .
#
# The runtime stage is distroless (no shell, no package manager) and runs as the
# numeric non-root user 65532, so that Kubernetes can verify `runAsNonRoot`.
# Nothing is written to the root file system: the authorization token goes to
# the shared emptyDir given with --auth-token-file, so `readOnlyRootFilesystem:
# true` works. The sidecar's exec probes run `/irsa-proxy probe URL`.

# ---- build ----
# Debian bookworm, the same glibc as distroless cc-debian12 below.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Extra cargo features: empty for the sidecar, `tools` for the webhook.
ARG FEATURES=""

# Dependencies first, in their own layer: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --no-default-features --features "$FEATURES" \
    && rm -rf src

# The crate itself. touch: make cargo rebuild it rather than keep the dummy.
# --no-default-features: the sidecar's core (serve, probe, link-local, doctor)
# without the tools (sts-emulator, mint, dev, inject), which a pod never runs.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --no-default-features --features "$FEATURES" \
    && cp target/release/irsa-proxy /irsa-proxy

# ---- runtime ----
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /irsa-proxy /irsa-proxy
USER 65532:65532
EXPOSE 9911
ENTRYPOINT ["/irsa-proxy", "serve"]
