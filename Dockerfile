# coupang-keybot: `docker compose up` (compose.yaml) or `docker build -t coupang-keybot .`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=3000

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY bot ./bot
COPY storage ./storage
# the locked packages only, each checked against its hash; then the bot itself with the locked build backend
RUN pip install --require-hashes --no-deps -r requirements.lock \
    && pip install --no-deps --no-build-isolation . \
    && useradd --create-home --uid 10001 keybot \
    && mkdir -p /app/data \
    && chown keybot /app/data

USER keybot
# SQLite (the default DATABASE_URL) lives here; with PostgreSQL it stays empty
VOLUME ["/app/data"]
EXPOSE 3000
# GET /healthz on KEYBOT_OPS_ADDR when set, else on KEYBOT_BIND:PORT (bot/healthcheck.py)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]
CMD ["coupang-keybot", "serve"]
