#!/usr/bin/env bash
# Install Debian packages the test command needs: scripts/apt-install.sh WHAT-FOR PACKAGE...
#
# Non-interactive and quiet, so it runs in CI (as root, no terminal) as well as on a laptop;
# without root it fails, saying what to install. `apt-get update` runs at most once, and only
# when needed: when a package has no candidate (empty package lists, as on a fresh image; the
# lists it fetches then serve the scripts that run after it) or when the install fails on
# stale lists.
set -euo pipefail
why=$1
shift
if [ "$(id -u)" -ne 0 ]; then
  echo "$why: missing, and installing it needs root: apt-get install $*" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$why: missing, and this is not a Debian-like system (no apt-get): install $* yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
updated=no
update() {
  echo "updating the package lists (apt-get update)" >&2
  apt-get update -q >/dev/null
  updated=yes
}
for package in "$@"; do
  if ! apt-cache policy "$package" 2>/dev/null | grep -q "Candidate: [^(]"; then
    update
    break
  fi
done
echo "installing $* (Debian packages) for $why" >&2
if ! apt-get install -y -q "$@" >/dev/null; then
  if [ "$updated" = yes ]; then
    echo "$why: apt-get install $* failed" >&2
    exit 1
  fi
  update
  apt-get install -y -q "$@" >/dev/null
fi
