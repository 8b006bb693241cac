FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng libespeak-ng1 libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ivr ./ivr
RUN pip install --no-cache-dir .
COPY grammars ./grammars
COPY prompts ./prompts
COPY deploy/docker/entrypoint.sh /usr/local/bin/ivr-entrypoint

# Not root: the service owns only its data volume.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin ivr \
    && mkdir -p /data && chown ivr:ivr /data
USER ivr

# The flow, grammars and prompts are read from the volume (copied there on the first start,
# see the entrypoint), so the console's edits survive a new container.
ENV IVR_DATA_DIR=/data \
    IVR_GRAMMAR_DIR=/data/grammars \
    IVR_PROMPTS_DIR=/data/prompts \
    IVR_HOST=0.0.0.0 \
    IVR_SIP_PORT=5060 \
    IVR_RTP_PORTS=10000-10199
VOLUME /data

# HTTP (API, console, media streams), AudioSocket, SIP and its RTP range.
EXPOSE 8080/tcp 9092/tcp 5060/udp 5060/tcp 10000-10199/udp

# Ready: database reachable, ASR workers up, flow loaded, not draining (the model loads first).
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]

ENTRYPOINT ["ivr-entrypoint"]
CMD ["ivr", "serve"]
