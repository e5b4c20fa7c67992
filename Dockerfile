# The API server against an external MongoDB (MONGODB_URI). Build: docker build -t error-tracker .

# GraphiQL's bundle, built from the pinned npm packages (frontend/graphiql/package-lock.json).
FROM node:20-slim AS graphiql
WORKDIR /build
COPY frontend/graphiql/package.json frontend/graphiql/package-lock.json frontend/graphiql/
RUN cd frontend/graphiql && npm ci --no-audit --no-fund
COPY frontend/graphiql frontend/graphiql
RUN mkdir -p app/web/static && cd frontend/graphiql && node build.mjs

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /srv
COPY requirements/runtime.lock requirements/runtime.lock
RUN pip install --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY app ./app
COPY --from=graphiql /build/app/web/static/graphiql ./app/web/static/graphiql
RUN pip install --no-deps . && useradd --system --uid 10001 --home /srv app

USER app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/livez', timeout=2)"

CMD ["python", "-m", "app", "serve"]
