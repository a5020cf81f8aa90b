# syntax=docker/dockerfile:1
# The creditsessions image: one static binary on an empty base, as a non-root user.
# deploy/image_test.go builds the same binary with the same flags and runs it in an
# empty root holding exactly what the final stage copies; keep the two in step.

FROM golang:1.26.10-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static: no cgo, so no libc to ship; -trimpath keeps build paths out of the binary.
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/creditsessionsd ./cmd/creditsessionsd

FROM scratch
ARG SOURCE=https://github.com/creditsessions/creditsessions
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="creditsessions" \
      org.opencontainers.image.description="Plaid's credit sessions over gRPC and Plaid-shaped REST" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# CA certificates, for Plaid's TLS.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# A passwd entry for the numeric user, so that tools inside and outside name it.
COPY deploy/image/passwd /etc/passwd
COPY --from=build /out/creditsessionsd /creditsessionsd
USER 65532:65532
# gRPC, the REST mirror, and the admin listener (metrics and probes, plaintext).
EXPOSE 50051 8080 9090
ENTRYPOINT ["/creditsessionsd"]
# Without arguments, the image serves on all interfaces in plaintext on the embedded
# emulator, for trying it out: the service refuses non-loopback addresses without TLS
# and caller authentication unless told -allow-insecure. Kubernetes (deploy/kubernetes)
# replaces these arguments with TLS, client authentication and an authorization policy.
CMD ["-grpc-addr=:50051", "-http-addr=:8080", "-admin-addr=:9090", "-allow-insecure"]
