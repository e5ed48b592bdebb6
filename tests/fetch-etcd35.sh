#!/usr/bin/env bash
# Puts etcd 3.5's etcd, etcdctl and etcdutl (Debian trixie's etcd-server / etcd-client) under DIR/usr/bin,
# for the tests that run the 3.5 tools beside etcd 3.4.23. Idempotent; the system's apt setup is not
# touched: a private APT_CONFIG names trixie, with an empty dpkg status, and the .debs are only unpacked.
set -euo pipefail
dir=${1:?usage: fetch-etcd35.sh DIR}
if "$dir/usr/bin/etcdctl" version 2>/dev/null | grep '^etcdctl version: 3\.5\.' >/dev/null; then exit 0; fi
apt=$(mktemp -d /tmp/modkv-apt35.XXXXXX)
trap 'rm -rf "$apt"' EXIT
mkdir -p "$apt/etc/sources.list.d" "$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$dir"
touch "$apt/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  >"$apt/etc/sources.list"
cat >"$apt/apt.conf" <<CONF
Dir::Etc::SourceList "$apt/etc/sources.list";
Dir::Etc::SourceParts "$apt/etc/sources.list.d";
Dir::State "$apt/state";
Dir::State::status "$apt/status";
Dir::Cache "$apt/cache";
APT::Sandbox::User "root";
CONF
export APT_CONFIG=$apt/apt.conf
apt-get update -qq
(cd "$apt/debs" && apt-get download -qq etcd-server etcd-client)
for deb in "$apt"/debs/*.deb; do dpkg-deb -x "$deb" "$dir"; done
"$dir/usr/bin/etcdctl" version | sed -n 1p
