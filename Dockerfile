# One image for every process of the ecosystem: each unit and the gateway.
# The process is chosen by the command, e.g. `run unit pricing` or `run gateway`;
# docker-compose.yml runs one container per process, deploy/k8s one Deployment per process.
#
#   docker build -t mbs .
#   docker run --rm -e MBS_KAFKA_BOOTSTRAP=host:9092 mbs run unit pricing
#
# Two stages. The first (stage 0) builds the sdist and, from it, the wheel, as a release
# would; the second installs only that wheel. So the image runs what `pip install` gives any
# user (package data included), and no source tree is there to shadow it.
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ecosystem.py ./
COPY mbs ./mbs
COPY contracts ./contracts
COPY services ./services
COPY gateway ./gateway
RUN pip install "build>=1.2" \
    && python -m build --outdir /dist .


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

COPY --from=0 /dist /tmp/dist
RUN pip install /tmp/dist/*.whl \
    && rm -rf /tmp/dist

# The units' state directory (MBS_UNIT_STATE_DIR in docker-compose.yml and deploy/k8s)
# belongs to mbs, so a volume mounted there starts out writable by it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mbs \
    && mkdir -p /var/lib/mbs/units \
    && chown -R mbs /var/lib/mbs
USER mbs
WORKDIR /home/mbs

# The gateway's HTTP port (MBS_GATEWAY_PORT); units serve /healthz, /readyz and /metrics
# on MBS_UNIT_PORT (9100 in docker-compose.yml and deploy/k8s).
EXPOSE 8080 9100

ENTRYPOINT ["mbs"]
CMD ["--help"]
