# device-alerts: a small, non-root image of the bot in HTTP mode (README: Production).
#
#   docker build -t device-alerts .
#   docker run --env-file .env -p 127.0.0.1:3000:3000 device-alerts            # HTTP mode, behind your TLS proxy
#   docker run --env-file .env device-alerts python -m bot socket              # or Socket Mode
#
# Secrets come from the environment at run time (--env-file, compose's env_file, your orchestrator's secrets);
# nothing secret is copied into the image (.dockerignore leaves .env out).

# -- build: install the project and its dependencies into a virtual environment -----------------------------------
FROM python:3.12-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
RUN /opt/venv/bin/pip install .

# -- run: the virtual environment only, as an unprivileged user -----------------------------------------------------
FROM python:3.12-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=3000
RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid bot --home-dir /data --no-create-home --shell /usr/sbin/nologin bot \
    && mkdir /data && chown bot:bot /data
COPY --from=build /opt/venv /opt/venv
# The default BOT_STATE_URL (sqlite:///device-alerts.db) is relative to here: mount a volume on /data to keep
# watches across restarts, or use Redis (compose.yaml).
WORKDIR /data
USER bot:bot
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["python", "-m", "bot", "http"]
