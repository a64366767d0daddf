# The operator image; building, labelling and pushing it: docs/release.md.
#   docker build -t album-operator:0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
# No `# syntax=` line: BuildKit would fetch that frontend from a registry, and the built-in one
# reads this file (so does the classic builder: no RUN --mount here).

# Both stages start from it. The default is the tag python:3.11-slim (Python 3.11.16) pinned by
# the digest of its multi-platform index, so that a rebuild gets the same base. Any Debian-like
# image with Python >= 3.11 as `python` (and its venv module), groupadd and useradd will do, e.g.
# one made from Debian packages where no registry is reachable (docs/release.md):
#   docker build --build-arg PYTHON_IMAGE=albumops-base:bookworm .
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# --- build: install the project and its dependencies into a virtualenv --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
# Spelled out: an image imported from a root file system may declare no PATH to extend.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /src
# pip-ca.pem, when the builder puts one into the context, is the CA bundle pip trusts (TLS to
# the package index through a proxy that re-signs it); the pattern copies nothing otherwise.
# It stays in this stage: the image gets only the virtualenv.
COPY pyproject.toml README.md LICENSE pip-ca.pe[m] ./
COPY operator/album_operator/ operator/album_operator/
RUN if [ -f pip-ca.pem ]; then export PIP_CERT=/src/pip-ca.pem; fi \
 && pip install --upgrade pip \
 && pip install .

# --- runtime: the virtualenv only, run as an unprivileged user ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# The default VERSION follows pyproject.toml (`make version` changes both).
ARG VERSION=0.1.0
ARG REVISION=unknown
# Where the source is published, and the build's time (RFC 3339): docs/release.md passes both.
ARG SOURCE_URL=""
ARG CREATED=""
LABEL org.opencontainers.image.title="album-operator" \
      org.opencontainers.image.description="Kubernetes operator for Qdrant album collections" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.created="${CREATED}"
# Group 0 owns what the operator may write: OpenShift runs it under an arbitrary uid in group 0.
RUN groupadd --system --gid 10001 album \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/album --create-home \
      --shell /usr/sbin/nologin album \
 && mkdir -p /var/lib/album-operator \
 && chown 10001:0 /var/lib/album-operator /home/album \
 && chmod g=u /var/lib/album-operator /home/album
COPY --from=build /opt/venv /opt/venv
# ALBUMOPS_REVISION: the albumops_build_info metric's revision label.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/home/album \
    ALBUMOPS_REVISION=${REVISION}
WORKDIR /home/album
USER 10001:10001
EXPOSE 8080 9090 8081
ENTRYPOINT ["album-operator", "run"]
