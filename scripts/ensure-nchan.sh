#!/usr/bin/env bash
# The benchmark's fast reference is nginx with the Nchan module (Debian: nginx-light and
# libnginx-mod-nchan); the load tool's tests run it too. Install them when they are missing;
# non-interactive, so it runs in CI (as root, no terminal) as well as on a laptop. nginx is
# only ever started by the bench and its tests, on their own ports (the package's own service
# is not started here: there is no init system to start it in a container, and none is needed).
set -euo pipefail
cd "$(dirname "$0")"
if [ -x "${NGINX:-/usr/sbin/nginx}" ] && [ -f "${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}" ]; then
  exit 0
fi
./apt-install.sh "nginx with Nchan (the benchmark's reference)" nginx-light libnginx-mod-nchan
