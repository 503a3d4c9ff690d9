# shellcheck shell=bash
# Sourced by the scripts: installs Debian packages the build or the tests
# need when they are missing (as root, or through sudo).

# ensure_debian_packages CHECK PACKAGE... — runs CHECK (a shell command);
# when it fails, installs the packages.
ensure_debian_packages() {
  local check="$1"; shift
  if ! eval "$check" >/dev/null 2>&1; then
    printf '\033[1m==> installing %s (Debian packages)\033[0m\n' "$*" >&2
    if [ "$(id -u)" -eq 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
  fi
}
