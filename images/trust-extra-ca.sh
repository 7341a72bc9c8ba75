#!/bin/sh
# Build /etc/ssl/certs/gallery-ca-bundle.crt: the image's own CA bundle plus every extra
# CA certificate the self-hoster dropped into ca/ (for TLS-intercepting proxies and
# private Git servers). The images point pip, requests, git and node at this bundle.
set -eu
extra_dir="${1:-/tmp/gallery-ca}"
bundle=/etc/ssl/certs/gallery-ca-bundle.crt
mkdir -p /etc/ssl/certs
: > "$bundle.new"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cat /etc/ssl/certs/ca-certificates.crt >> "$bundle.new"
fi
for cert in "$extra_dir"/*.crt "$extra_dir"/*.pem; do
    if [ -f "$cert" ]; then
        echo "trusting extra CA certificates from ca/$(basename "$cert")"
        printf '\n' >> "$bundle.new"
        cat "$cert" >> "$bundle.new"
    fi
done
mv "$bundle.new" "$bundle"
chmod 644 "$bundle"
