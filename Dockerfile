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

ENV IVR_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
CMD ["ivr", "serve"]
