#!/bin/sh
# install-deps.sh [build] [test] [bench] - installs the Debian packages
# Junction needs that are not yet installed. Runs apt-get only when
# something is missing (as root, or through sudo).
set -e
build="gcc make pkg-config libuv1-dev libjansson-dev libssl-dev libcurl4-openssl-dev zlib1g-dev"
test="clang libclang-rt-14-dev libcmocka-dev python3 python3-pytest python3-requests curl openssl"
bench="wrk nginx-light"
want=""
for set in "$@"; do
    case "$set" in
        build) want="$want $build" ;;
        test) want="$want $test $bench" ;;
        bench) want="$want $bench" ;;
        *) echo "install-deps.sh: unknown set '$set' (build, test, bench)" >&2; exit 2 ;;
    esac
done
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
