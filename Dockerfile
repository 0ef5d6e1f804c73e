# Multi-stage build of the `shop` binary. The bundled librdkafka builds with gcc + make.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p shop-http --bin shop && cp target/release/shop /usr/local/bin/shop

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/shop --create-home shop
COPY --from=build /usr/local/bin/shop /usr/local/bin/shop
USER shop
WORKDIR /var/lib/shop
ENV SHOP_HOST=0.0.0.0 SHOP_DATA_DIR=/var/lib/shop
ENTRYPOINT ["/usr/local/bin/shop"]
CMD ["run"]
