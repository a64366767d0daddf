# syntax=docker/dockerfile:1
# The operator image: `docker build -t album-operator:0.1.0 .` (see README, "Install with Helm").

# --- build: install the project and its dependencies into a virtualenv --------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/album_operator/ operator/album_operator/
RUN pip install --upgrade pip && pip install .

# --- runtime: the virtualenv only, run as an unprivileged user ----------------------------------
FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="album-operator" \
      org.opencontainers.image.description="Kubernetes operator for Qdrant album collections" \
      org.opencontainers.image.licenses="Apache-2.0"
# Group 0 owns what the operator may write: OpenShift runs it under an arbitrary uid in group 0.
RUN groupadd --system --gid 10001 album \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/album --create-home \
      --shell /usr/sbin/nologin album \
 && mkdir -p /var/lib/album-operator \
 && chown 10001:0 /var/lib/album-operator /home/album \
 && chmod g=u /var/lib/album-operator /home/album
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/home/album
WORKDIR /home/album
USER 10001:10001
EXPOSE 8080 9090 8081
ENTRYPOINT ["album-operator", "run"]
