# One image for every process of the ecosystem: each unit and the gateway.
# The process is chosen by the command, e.g. `run unit pricing` or `run gateway`;
# docker-compose.yml runs one container per process.
#
#   docker build -t mbs .
#   docker run --rm -e MBS_KAFKA_BOOTSTRAP=host:9092 mbs run unit pricing
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Build from a scratch directory that is removed afterwards, so the installed package in
# site-packages is the only copy in the image (no source tree shadowing it).
WORKDIR /tmp/src
COPY pyproject.toml README.md ecosystem.py ./
COPY mbs ./mbs
COPY contracts ./contracts
COPY services ./services
COPY gateway ./gateway
RUN pip install --no-cache-dir . \
    && rm -rf /tmp/src

# The units' state directory (MBS_UNIT_STATE_DIR in docker-compose.yml) belongs to mbs, so
# a named volume mounted there starts out writable by it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mbs \
    && mkdir -p /var/lib/mbs/units \
    && chown -R mbs /var/lib/mbs
USER mbs
WORKDIR /home/mbs

# The gateway's HTTP port (MBS_GATEWAY_PORT); units serve no HTTP yet.
EXPOSE 8080

ENTRYPOINT ["mbs"]
CMD ["--help"]
