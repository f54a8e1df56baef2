# Image of the amorsize demo app used by docker-compose.yml.
# Base pinned to a full version (Python 3.11.10, Debian bookworm); bump it on purpose.
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# 1. Dependencies, from pyproject.toml alone (build backend, runtime dependencies and
#    the prometheus and otel extras; wheel because setuptools before 70.1 needs it to
#    build): this layer is rebuilt only when pyproject.toml changes, never for an edit
#    of the source.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); d = p['project']; o = d['optional-dependencies']; print('\n'.join(p['build-system']['requires'] + ['wheel'] + d['dependencies'] + o['prometheus'] + o['otel']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# 2. The package itself, without touching the dependencies installed above.
COPY README.md ./
COPY amorsize ./amorsize
RUN pip install --no-deps --no-build-isolation . \
 && rm -rf /src/build /src/*.egg-info \
 && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin amorsize

# A numeric non-root user, so the runtime can verify it is not root.
USER 10001:10001
WORKDIR /home/amorsize

# Prometheus metrics (when started with --metrics-port 9464).
EXPOSE 9464

CMD ["amorsize", "demo"]
