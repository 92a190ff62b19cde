# Builds the syncguard binary into a small image. docker-compose.yml uses it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/syncguard ./cmd/syncguard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/syncguard /usr/local/bin/syncguard
USER nonroot
ENTRYPOINT ["/usr/local/bin/syncguard"]
