# One image for every FLASHES service; docker-compose.yml picks the service with `flashes run NAME`.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.lock
COPY flashes ./flashes
COPY schemas ./schemas
COPY services ./services
COPY data ./data
RUN pip install --no-cache-dir --no-deps .
ENV FLASHES_VAR_DIR=/var/lib/flashes
CMD ["flashes", "--help"]
