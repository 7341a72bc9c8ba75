#!/bin/sh
# Start Traefik with its static configuration as command-line flags, so one file covers
# the three modes: plain HTTP; HTTPS with the site's own certificate when
# GALLERY_TLS_CERT_FILE and GALLERY_TLS_KEY_FILE are set (mounted at /etc/traefik/tls/);
# HTTPS with Let's Encrypt when GALLERY_DOMAIN and GALLERY_ACME_EMAIL are set. Routes and
# middlewares live in traefik/dynamic/ (mounted at /etc/traefik/dynamic/routes/).
# The API and dashboard stay off; the ping endpoint listens on an unpublished port.
# The access log leaves out request paths: a URL may carry a token.
set -eu

set -- \
    --global.checkNewVersion=false \
    --global.sendAnonymousUsage=false \
    --api=false \
    --ping=true \
    --ping.entryPoint=ping \
    --entryPoints.ping.address=:8082 \
    --entryPoints.web.address=:80 \
    --providers.file.directory=/etc/traefik/dynamic \
    --providers.file.watch=true \
    --log.level="${GALLERY_TRAEFIK_LOG_LEVEL:-INFO}" \
    --accessLog=true \
    --accessLog.format=json \
    --accessLog.fields.headers.defaultMode=drop \
    --accessLog.fields.names.RequestPath=drop \
    --accessLog.fields.names.StartLocal=drop

if [ -n "${GALLERY_TLS_CERT_FILE:-}" ] || [ -n "${GALLERY_TLS_KEY_FILE:-}" ]; then
    if [ ! -s /etc/traefik/tls/site.crt ] || [ ! -s /etc/traefik/tls/site.key ]; then
        echo "GALLERY_TLS_CERT_FILE and GALLERY_TLS_KEY_FILE must both name a PEM file." >&2
        exit 2
    fi
    echo "HTTPS with the site's own certificate; HTTP redirects to HTTPS."
    cat > /etc/traefik/dynamic/tls.yml <<'TLS'
# Written by entrypoint.sh: the site's own certificate for every HTTPS request.
tls:
  options:
    default:
      minVersion: VersionTLS12
  stores:
    default:
      defaultCertificate:
        certFile: /etc/traefik/tls/site.crt
        keyFile: /etc/traefik/tls/site.key
TLS
    set -- "$@" \
        --entryPoints.web.http.redirections.entryPoint.to=websecure \
        --entryPoints.web.http.redirections.entryPoint.scheme=https \
        --entryPoints.websecure.address=:443 \
        --entryPoints.websecure.http.tls=true
elif [ -n "${GALLERY_DOMAIN:-}" ]; then
    if [ -z "${GALLERY_ACME_EMAIL:-}" ]; then
        echo "GALLERY_DOMAIN is set but GALLERY_ACME_EMAIL is not: Let's Encrypt needs both." >&2
        exit 2
    fi
    echo "HTTPS for ${GALLERY_DOMAIN} with Let's Encrypt; HTTP redirects to HTTPS."
    set -- "$@" \
        --entryPoints.web.http.redirections.entryPoint.to=websecure \
        --entryPoints.web.http.redirections.entryPoint.scheme=https \
        --entryPoints.websecure.address=:443 \
        --entryPoints.websecure.http.tls.certResolver=letsencrypt \
        --entryPoints.websecure.http.tls.domains[0].main="${GALLERY_DOMAIN}" \
        --certificatesResolvers.letsencrypt.acme.email="${GALLERY_ACME_EMAIL}" \
        --certificatesResolvers.letsencrypt.acme.storage=/var/lib/traefik/acme.json \
        --certificatesResolvers.letsencrypt.acme.httpChallenge.entryPoint=web
    if [ -n "${GALLERY_ACME_CA_SERVER:-}" ]; then
        set -- "$@" --certificatesResolvers.letsencrypt.acme.caServer="${GALLERY_ACME_CA_SERVER}"
    fi
else
    echo "Plain HTTP (see the README's HTTPS section for the two ways to turn on HTTPS)."
fi

exec traefik "$@"
