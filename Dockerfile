# syntax=docker/dockerfile:1
# Build stage: resolve the locked dependencies into a virtual environment.
FROM python:3.11.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project

# Runtime stage: the venv, the code, a non-root user. One image runs every daemon.
FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid 10001 --no-create-home app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY core ./core
COPY runtime ./runtime
COPY db ./db
COPY broker ./broker
COPY scheduler ./scheduler
COPY pump ./pump
COPY worker ./worker
COPY inbox ./inbox
COPY webhooks ./webhooks
COPY ops ./ops
COPY api ./api
COPY migrations ./migrations
COPY pyproject.toml ./
# Numeric, so that Kubernetes' runAsNonRoot can check it. DKIM keys mounted into the
# container must be readable by uid 10001 (or its group: `chgrp 10001 key.pem; chmod 0640`).
USER 10001:10001
# Override per service: python -m scheduler | pump | worker | db migrate | db seed-demo
CMD ["python", "-m", "worker"]
