# syntax=docker/dockerfile:1
# azlin-operator image: release binary on a distroless, non-root base.
#   docker build -t azlin-operator:dev .
# The final image has no shell and no package manager; the binary is the entrypoint
# (`run` by default; the Helm CRD upgrade hook runs `crds --apply`).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target dir between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin azlin-operator \
    && cp target/release/azlin-operator /azlin-operator

# cc: glibc, libgcc and CA certificates (ARM and the Kubernetes API are reached over TLS).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="azlin-operator" \
      org.opencontainers.image.description="Kubernetes operator for Azure development VM fleets, shared NFS storage and backups" \
      org.opencontainers.image.licenses="MIT"
COPY --from=builder /azlin-operator /azlin-operator
# distroless nonroot: uid/gid 65532, matching the chart's securityContext.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/azlin-operator"]
CMD ["run"]
