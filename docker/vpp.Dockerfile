# FD.io VPP 25.10 from FD.io's official package repository (packagecloud.io/fdio/2510), Debian 12.
FROM debian:bookworm-slim
ARG VPP_VERSION=25.10
ARG VPP_REPO=2510
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d -m 0755 /etc/apt/keyrings \
 && curl -fsSL "https://packagecloud.io/fdio/${VPP_REPO}/gpgkey" | gpg --dearmor -o /etc/apt/keyrings/fdio.gpg \
 && echo "deb [signed-by=/etc/apt/keyrings/fdio.gpg] https://packagecloud.io/fdio/${VPP_REPO}/debian/ bookworm main" \
      > /etc/apt/sources.list.d/fdio.list \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "vpp=${VPP_VERSION}*" "vpp-plugin-core=${VPP_VERSION}*" \
 && rm -rf /var/lib/apt/lists/*
COPY docker/startup.conf /etc/vpp/startup.conf
ENTRYPOINT ["/usr/bin/vpp", "-c", "/etc/vpp/startup.conf"]
