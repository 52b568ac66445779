#!/usr/bin/env bash
# The browser interoperability tests drive Debian's Chromium (headless). Install it when it is
# missing; non-interactive, so it runs in CI (as root, no terminal) as well as on a laptop.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing and installing it needs root: apt-get install chromium" >&2
  exit 1
fi
echo "installing chromium (Debian package)" >&2
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
