# hopline in a container: built with the Rust toolchain in one stage, run from a small
# image (distroless: glibc, CA certificates, no shell) as a non-root user in the other.
#
#   docker build -t hopline .
#   docker run --rm -p 8080:8080 -p 9090:9090 hopline                      # serve
#   docker run --rm -p 8080:8080 -v $PWD/hopline.toml:/etc/hopline/hopline.toml:ro \
#       hopline proxy --config /etc/hopline/hopline.toml                  # proxy
#
# SIGTERM drains (docker stop waits 10 s by default: give it --stop-timeout past the
# drain timeout); SIGHUP reloads the configuration file and certificates.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY examples examples
RUN cargo build --release --locked --bin hopline

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/hopline /usr/local/bin/hopline
USER nonroot:nonroot
# Traffic and the admin endpoint (/metrics, /ready, /healthz).
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hopline"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--admin", "0.0.0.0:9090"]
