#!/usr/bin/env bash
# The PostgreSQL tests start their own server from Debian's `postgresql` package. Install it when it
# is missing and we may (root with apt-get); otherwise say so, and those tests skip (or fail in CI).
set -u
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian package postgresql) for the multi-worker tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; PostgreSQL tests will not run" >&2
else
  echo "note: PostgreSQL server binaries not found (apt-get install postgresql); those tests will skip" >&2
fi
exit 0
