# syntax=docker/dockerfile:1
# oai2ollama: Ollama's API on top of any OpenAI-compatible upstream.
#
#   docker build -t oai2ollama .
#   docker run -p 11434:11434 -e OPENAI_BASE_URL=https://api.openai.com/v1 -e OPENAI_API_KEY=sk-... oai2ollama
#   docker run -p 11434:11434 oai2ollama --base-url http://host.docker.internal:8080/v1 -c tools
#
# Every setting is an environment variable or a flag after the image name (see .env.example).
# Change the port with -e PORT=..., not --port: the health check reads PORT.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY oai2ollama ./oai2ollama
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheel is mounted for the install only, so no copy of it stays in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install /wheels/*.whl \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin oai2ollama \
    && mkdir /data && chown oai2ollama /data
USER oai2ollama
WORKDIR /tmp

# Inside a container "localhost" would be unreachable from the host: listen on every interface.
ENV HOST=0.0.0.0 \
    PORT=11434
EXPOSE 11434

# The usage ledger (SQLite) in a volume: `docker run -v oai2ollama-data:/data …` keeps it across containers.
ENV OAI2OLLAMA_DATABASE_URL=sqlite:////data/oai2ollama.db
VOLUME /data

# The slim image has no curl; Python's urllib asks GET / on the configured port: the one route that
# needs no API key, so the check passes whether keys are set or not (tests/test_docker.py runs it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '11434') + '/', timeout=4)"]

ENTRYPOINT ["oai2ollama"]
