# Sourced by the scripts that install what they need on Debian:
#   sigreg_ensure_packages PACKAGE...
# installs, with apt-get (through sudo when not root), those of the given
# Debian packages that are not installed yet; nothing when all are, and
# nothing on a system without dpkg (the caller's own checks then say what is
# missing).
sigreg_ensure_packages() {
    command -v dpkg-query >/dev/null 2>&1 || return 0
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
