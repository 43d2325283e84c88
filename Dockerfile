# One Dockerfile for the three servers of IMS Lab Core, built from the one Cargo workspace:
#   docker build --target hss -t imslab/hss .
#   docker build --target pcscf -t imslab/pcscf .
#   docker build --target appserver -t imslab/appserver .
# docker-compose.yml builds all three. Each image holds one binary, runs as an unprivileged
# user and reads /etc/imslab/<binary>.toml (mount yours; deploy/ has the lab's).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hss --bin pcscf --bin appserver \
 && mkdir /out && cp target/release/hss target/release/pcscf target/release/appserver /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/imslab --create-home imslab
WORKDIR /var/lib/imslab

FROM runtime AS hss
COPY --from=build /out/hss /usr/local/bin/hss
USER imslab
# Cx (Diameter over TCP) and the REST API / web page.
EXPOSE 3868/tcp 8080/tcp
ENTRYPOINT ["hss", "-c", "/etc/imslab/hss.toml"]

FROM runtime AS pcscf
COPY --from=build /out/pcscf /usr/local/bin/pcscf
# The kernel IPsec backend programs XFRM: it needs CAP_NET_ADMIN (granted in
# docker-compose.yml), which an unprivileged user does not keep; the userspace backend and
# `policy = "off"` need nothing.
EXPOSE 5060/udp 5060/tcp
ENTRYPOINT ["pcscf", "-c", "/etc/imslab/pcscf.toml"]

FROM runtime AS appserver
COPY --from=build /out/appserver /usr/local/bin/appserver
USER imslab
# ISC (SIP from the S-CSCF), NCID, the Fritz!Box call monitor and the REST API.
EXPOSE 5070/udp 5070/tcp 3333/tcp 1012/tcp 8082/tcp
ENTRYPOINT ["appserver", "-c", "/etc/imslab/appserver.toml"]
