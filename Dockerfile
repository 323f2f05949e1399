# syntax=docker/dockerfile:1
# Build: docker build -t tandem-agent:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/tandem-agent ./cmd/agent

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/tandem-agent /usr/local/bin/tandem-agent
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tandem-agent"]
CMD ["run"]
