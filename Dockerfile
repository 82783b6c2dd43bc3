# syntax=docker/dockerfile:1
# Build: a full Rust toolchain. Runtime: a slim Debian with only the binary,
# running as a non-root user, data in the /data volume.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The commit built, for `trail --version` and server.start (.git is not in
# the build context): docker build --build-arg TRAIL_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG TRAIL_COMMIT=unknown
ENV TRAIL_COMMIT=${TRAIL_COMMIT}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY benches benches
RUN cargo build --release --locked --bin trail

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 trail \
 && useradd --system --uid 10001 --gid trail --home-dir /data --shell /usr/sbin/nologin trail \
 && mkdir -p /data && chown trail:trail /data
COPY --from=build /src/target/release/trail /usr/local/bin/trail
# Inside the container trail listens on every interface; it then refuses to
# start without an API token: pass TRAIL_BOOTSTRAP_TOKEN (or
# TRAIL_BOOTSTRAP_TOKEN_FILE, e.g. a Docker secret) to create an admin token.
ENV TRAIL_DB=/data/trail.db \
    TRAIL_BIND=0.0.0.0:8080 \
    TRAIL_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
# The binary checks itself (GET /readyz): the image needs no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["trail", "healthcheck"]
ENTRYPOINT ["trail"]
CMD ["serve"]
