#!/bin/sh
# install-deps.sh [build] [test] [bench] - installs the Debian packages
# Junction needs that are not yet installed. Runs apt-get only when
# something is missing (as root, or through sudo).
set -e
build="gcc make pkg-config libuv1-dev libjansson-dev libssl-dev libcurl4-openssl-dev zlib1g-dev libwslay-dev libsnappy-dev liblz4-dev libzstd-dev"
test="clang chromium nodejs npm libclang-rt-14-dev libcmocka-dev python3 python3-pytest python3-requests python3-websockets python3-paho-mqtt python3-pika amqp-tools mosquitto-clients python3-confluent-kafka python3-kafka kcat curl openssl"
bench="wrk nginx-light mosquitto nats-server rabbitmq-server iperf3 fio gnuplot-nox"
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
    # node and npm may come from elsewhere (npm ships inside other nodejs
    # builds): the commands are what the tests need.
    case "$p" in
        nodejs) command -v node >/dev/null 2>&1 && continue ;;
        npm) command -v npm >/dev/null 2>&1 && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# Node clients of the tests (eventsource, playwright-core), pinned by
# tests/js/package-lock.json.
case " $* " in
    *" test "*)
        here=$(dirname "$0")
        if [ ! -d "$here/../tests/js/node_modules" ]; then
            (cd "$here/../tests/js" && npm ci --no-audit --no-fund --loglevel=error)
        fi ;;
esac
