#!/usr/bin/env bash
# install-deps.sh: the Debian 12 packages mdfeed needs to build, run and test.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
	build-essential pkg-config rsync curl
	postgresql-15 postgresql-server-dev-15 postgresql-client-15
	libcurl4-openssl-dev libwebsockets-dev libjson-c-dev libzip-dev libssl-dev
	libipc-run-perl
	python3-aiohttp
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "== installing: ${missing[*]}"
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
