# shellcheck shell=bash
# Sourced by scripts/run and scripts/test (after scripts/postgres.sh, which
# defines `say` and `as_root`): builds the web page in web/ and, for the
# end-to-end tests, makes sure Debian's Chromium is installed.
#
# Nothing here downloads a browser: the tests drive the system's
# /usr/bin/chromium through playwright-core.

WEB_DIR_SOURCE="$PROJECT_ROOT/web"

# A fingerprint of the files in $1.. (regular files, sorted by path).
fingerprint() {
  find "$@" -type f -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

# `npm ci && npm run build` in web/, skipping each step when what it depends
# on has not changed since it last ran: `npm ci` when package-lock.json is the
# same, the build when the sources and the installed packages are the same.
build_web_if_changed() {
  command -v npm >/dev/null || { echo "npm is missing: install Node.js 20.19+ and npm first" >&2; exit 1; }
  local lock_stamp="$WEB_DIR_SOURCE/node_modules/.marauders-lock-stamp"
  local dist_stamp="$WEB_DIR_SOURCE/dist/.marauders-build-stamp"
  local lock_print sources_print
  lock_print="$(fingerprint "$WEB_DIR_SOURCE/package-lock.json")"
  if [ "$(cat "$lock_stamp" 2>/dev/null)" != "$lock_print" ]; then
    say "installing the web page's packages (npm ci)"
    (cd "$WEB_DIR_SOURCE" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_print" > "$lock_stamp"
  fi
  sources_print="$(fingerprint "$WEB_DIR_SOURCE/src" "$WEB_DIR_SOURCE/index.html" \
    "$WEB_DIR_SOURCE/package.json" "$WEB_DIR_SOURCE/package-lock.json" \
    "$WEB_DIR_SOURCE/tsconfig.json" "$WEB_DIR_SOURCE/vite.config.ts")"
  if [ "$(cat "$dist_stamp" 2>/dev/null)" != "$sources_print" ]; then
    say "building the web page (npm run build → web/dist)"
    (cd "$WEB_DIR_SOURCE" && npm run build --silent)
    echo "$sources_print" > "$dist_stamp"
  else
    say "web page is up to date (web/dist)"
  fi
}

# The end-to-end tests drive Debian's Chromium; install it when missing, as
# scripts/postgres.sh does PostgreSQL.
install_chromium_if_missing() {
  CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
  if [ -x "$CHROMIUM_PATH" ]; then export CHROMIUM_PATH; return 0; fi
  say "Chromium is not installed; installing it from Debian's packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
  [ -x "$CHROMIUM_PATH" ] || { echo "Chromium installation failed ($CHROMIUM_PATH is missing)" >&2; exit 1; }
  export CHROMIUM_PATH
}
