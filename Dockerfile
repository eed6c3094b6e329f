# syntax=docker/dockerfile:1
#
# irsa-proxy image: docker build -t irsa-proxy .
# The webhook's image (it needs the tools): docker build --build-arg FEATURES=tools -t irsa-proxy-webhook .
# Both architectures: docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/irsa-proxy:TAG --push .
#
# The runtime stage is distroless (no shell, no package manager) and runs as the
# numeric non-root user 65532, so that Kubernetes can verify `runAsNonRoot`.
# Nothing is written to the root file system: the authorization token goes to
# the shared emptyDir given with --auth-token-file, so `readOnlyRootFilesystem:
# true` works. The sidecar's exec probes run `/irsa-proxy probe URL`.
#
# tests/image replays the build stage on exactly what this file COPYs (after
# .dockerignore) and runs its RUN lines, then checks the binary in a root file
# system made like the runtime image. Keep the build stage's paths relative to
# WORKDIR, so that the replay can run them in a scratch directory.

# ---- build ----
# Debian bookworm, the same glibc as distroless cc-debian12 below. The stage runs
# on the builder's platform and cross-compiles for the image's (TARGETPLATFORM,
# set by buildx), which is much faster than emulating the other architecture.
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
WORKDIR /src
ARG BUILDPLATFORM
ARG TARGETPLATFORM

# The Rust target and the cross gcc for TARGETPLATFORM (nothing for a native build).
COPY scripts/rust-target.sh scripts/
RUN scripts/rust-target.sh install

# Extra cargo features: empty for the sidecar, `tools` for the webhook.
ARG FEATURES=""

# Dependencies first, in their own layer: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit. Cargo.toml gives
# each [[test]] its path, so the manifest loads without tests/.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && scripts/rust-target.sh cargo build --release --locked --no-default-features --features "$FEATURES" \
    && rm -rf src

# The crate itself. touch: make cargo rebuild it rather than keep the dummy.
# --no-default-features: the sidecar's core (serve, probe, link-local, doctor)
# without the tools (sts-emulator, mint, dev, inject, webhook), which a pod never runs.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && scripts/rust-target.sh cargo build --release --locked --no-default-features --features "$FEATURES" \
    && mkdir -p out \
    && cp "$(scripts/rust-target.sh binary)" out/irsa-proxy

# ---- runtime ----
# buildx picks the image of TARGETPLATFORM.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/out/irsa-proxy /irsa-proxy
USER 65532:65532
EXPOSE 9911
ENTRYPOINT ["/irsa-proxy", "serve"]
