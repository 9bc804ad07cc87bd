# vppagent + felix-shim. Debian's packages for the kernel dataplane and BIRD; Python packages from PyPI, as locked in requirements/.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      iptables ipset bird2 iproute2 iputils-ping conntrack \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY vppagent ./vppagent
COPY felix_shim ./felix_shim
COPY requirements ./requirements
# Exactly the locked versions (hashes checked); LOCK=dev for the CI image, with the test tools.
ARG LOCK=runtime
RUN pip install --no-cache-dir --require-hashes --no-deps -r "requirements/${LOCK}.lock" \
 && pip install --no-cache-dir --no-deps --no-build-isolation .
# Tests are only needed in the CI image (LOCK=dev); they are small.
COPY tests ./tests
ENTRYPOINT ["vppagent"]
CMD ["run"]
