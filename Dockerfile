# contact_site as a container image: one image for the site (gunicorn, the default command)
# and for the outbox worker (`contact-site worker`). Everything it keeps is in /data, a
# volume: the SQLite database in /data/instance, uploads in /data/uploads.
#
#   podman build --format docker -t contact-site .    (or: docker build -t contact-site .)
#   podman run -d -p 127.0.0.1:8000:8000 -v contact-site-data:/data \
#       -e SECRET_KEY=... -e MAIL_SERVER=... contact-site
#
# `--format docker` keeps the HEALTHCHECK: Podman's default (OCI) image format has no place
# for it. pip reaches the package index with the build machine's own settings (a pip.conf
# and certificates in the base image, or PIP_* build arguments); nothing here names an
# index, a certificate or a credential, so the file builds anywhere as it is.

FROM docker.io/library/debian:bookworm-slim AS build

# Debian's python3 is 3.11 on bookworm. Distribution packages are not pinned: the archive
# keeps only the current point release, so a pinned version would stop building.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/contact-site
ENV PATH=/opt/contact-site/bin:$PATH
WORKDIR /src

# The pinned dependencies first, in a layer of their own: it stays cached while only the
# code changes. The cache mount keeps pip's downloads between builds, outside the image.
COPY requirements.txt ./
RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt

# Then the package itself, built from this context by its own backend (hatchling).
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip pip install .


FROM docker.io/library/debian:bookworm-slim

# ca-certificates: mail servers' and webhook targets' certificates are verified;
# tzdata: CONTACT_TIMEZONE's zone names. A fixed uid, so volumes and orchestrators that
# check for a non-root user (runAsNonRoot) see the same owner everywhere.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 contact-site \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin contact-site \
 && install -d -o 10001 -g 10001 -m 0750 /data

COPY --from=build /opt/contact-site /opt/contact-site
ENV PATH=/opt/contact-site/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The installed package keeps instance/ and uploads/ in the folder it runs in.
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000

# /healthz through the site itself, with the product's own command; HEALTHCHECK_URL when
# it listens elsewhere (for example on another port with host networking).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["contact-site", "healthcheck"]

# gunicorn finishes the requests in flight on SIGTERM (graceful_timeout 60 s in the
# shipped settings): give `podman stop` / `docker stop` a timeout above that.
STOPSIGNAL SIGTERM
# Exec form, and `contact-site serve` execs gunicorn in its place: gunicorn is process 1
# and gets the stop signal itself.
CMD ["contact-site", "serve", "--bind", "0.0.0.0:8000"]
