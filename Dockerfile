# The Marauder's Map service image, used by docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin marauders-map

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /data marauders \
 && mkdir -p /data && chown marauders /data
COPY --from=build /src/target/release/marauders-map /usr/local/bin/marauders-map
USER marauders
ENV HOST=0.0.0.0 PORT=4000 MARAUDERS_DATA_DIR=/data
EXPOSE 4000
ENTRYPOINT ["marauders-map"]
CMD ["serve"]
