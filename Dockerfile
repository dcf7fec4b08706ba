# syntax=docker/dockerfile:1
# The longtask image: one image for every component, chosen by the command
# (`longtask operator`, `longtask worker --pool P`, `longtask api`), as the Helm chart does.
ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM python:${PYTHON_VERSION}-slim AS build
COPY --from=uv /uv /usr/local/bin/uv
# Bytecode compiled at build time (the runtime root filesystem may be read-only); a copied,
# self-contained environment; the base image's Python, never a downloaded one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/longtask
WORKDIR /src
# The locked dependencies first: this layer changes only when uv.lock does.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# Then the project itself, installed as a wheel (not editable: /src does not ship).
COPY README.md ./
COPY contracts contracts
COPY runtime runtime
COPY api api
COPY operator operator
COPY worker worker
COPY devtools devtools
COPY cli cli
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 longtask \
 && useradd --system --uid 10001 --gid longtask --home-dir /home/longtask --create-home \
    --shell /usr/sbin/nologin longtask
COPY --from=build /opt/longtask /opt/longtask
ENV PATH=/opt/longtask/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /home/longtask
EXPOSE 8080
ENTRYPOINT ["longtask"]
CMD ["--help"]
