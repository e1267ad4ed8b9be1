# The weft gateway. Build: docker build -t weft .
#
# With no arguments it runs what `cargo run --release` runs, the built-in demo, which
# listens on loopback: docker run --rm --network host weft
# With a configuration: docker run ... weft run --config /etc/weft/weft.toml
# (docker-compose.yml does so with deploy/weft.toml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weft-gateway

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/weft weft && mkdir -p /var/lib/weft && chown weft /var/lib/weft
COPY --from=build /src/target/release/weft /usr/local/bin/weft
USER weft
WORKDIR /var/lib/weft
EXPOSE 8000/tcp 8000/udp 9180/tcp
ENTRYPOINT ["weft"]
