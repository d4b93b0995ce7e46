# One image for every FLASHES service; docker-compose.yml picks the service with `flashes run NAME`.
# The base is a tag: pin it by digest (python:3.11-slim@sha256:...) when building for production, as
# `make pin-images` pins the compose images on a Docker host.
FROM python:3.11-slim
WORKDIR /app
# The runtime lock only, every file checked against its hash: no test tool ships in the image.
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY flashes ./flashes
COPY schemas ./schemas
COPY services ./services
COPY evaluation ./evaluation
COPY data ./data
COPY deploy/healthcheck.py ./deploy/healthcheck.py
RUN pip install --no-cache-dir --no-deps . \
 && useradd --system --uid 10001 --home-dir /var/lib/flashes --create-home flashes
ENV FLASHES_VAR_DIR=/var/lib/flashes
USER flashes
# The service this container runs answers on its metrics port (the API on its own port): deploy/healthcheck.py.
# One check costs ~0.3 s of CPU (importing the settings and the service list): every 30 s, seven services.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=4 CMD ["python", "/app/deploy/healthcheck.py"]
CMD ["flashes", "--help"]
