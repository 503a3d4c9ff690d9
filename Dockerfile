# The Marauder's Map service image, used by docker-compose.yml.

# The web page (web/), served at / from WEB_DIR.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

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
COPY --from=web /web/dist /usr/share/marauders-map/web
USER marauders
ENV HOST=0.0.0.0 PORT=4000 MARAUDERS_DATA_DIR=/data WEB_DIR=/usr/share/marauders-map/web
# 4000: HTTP and Socket.IO; 9464: /metrics (METRICS_ADDRESS, loopback unless set).
EXPOSE 4000 9464
ENTRYPOINT ["marauders-map"]
CMD ["serve"]
