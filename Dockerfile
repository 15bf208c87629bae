# syntax=docker/dockerfile:1
# azlin-operator image: static-enough release binary on a distroless, non-root base.
#   docker build -t azlin-operator:dev .
# The final image has no shell and no package manager; the binary is the entrypoint
# (`run` by default; the Helm CRD hook runs `crds --apply`).

FROM rust:1-bookworm AS builder
WORKDIR /src
# Build dependencies first so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
COPY crds ./crds
# Touch the sources so cargo rebuilds the crate, not only the cached dummy.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
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
