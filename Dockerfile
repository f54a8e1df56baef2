# Image of the amorsize demo app used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install ".[prometheus,otel]" \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin amorsize

USER amorsize
WORKDIR /home/amorsize

# Prometheus metrics (when started with --metrics-port 9464).
EXPOSE 9464

CMD ["amorsize", "demo"]
