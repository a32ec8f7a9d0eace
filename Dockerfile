# Strata: a static binary in a minimal image.
#
#   docker build -t strata .
#   docker run -p 8080:8080 -v strata-data:/data strata
#
# The image runs `strata serve` as an unprivileged user with its data
# (the embedded JetStream store and the Badger snapshot) in the /data
# volume. docker-compose.yml runs three of them as a cluster.
# Dockerfile.scratch builds the same image with no base image.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/strata ./cmd/strata \
 && mkdir -p /out/data /out/secrets

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/strata /strata
# A named volume mounted on either starts with the folder's owner
# (nonroot): /data for the node's data, /secrets for the cluster's secrets
# (docker-compose.yml's secrets service).
COPY --from=build --chown=nonroot:nonroot /out/data /data
COPY --from=build --chown=nonroot:nonroot /out/secrets /secrets
USER nonroot:nonroot
# HTTP gateway; NATS cluster routes (only with --cluster).
EXPOSE 8080 6222
VOLUME ["/data"]
ENV STRATA_DATA=/data STRATA_HTTP=0.0.0.0:8080
ENTRYPOINT ["/strata"]
CMD ["serve"]
