#!/usr/bin/env bash
# kafka-javascript (the @confluentinc/kafka-javascript npm package's client) against a tidelog
# broker this script starts: tests/js/*.test.js, each a plain node script.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
SUITE=kafka-javascript
command -v npm >/dev/null || peers_skip $SUITE "no node/npm (apt-get install nodejs npm)"
cd "$PEERS_ROOT/tests/js"
if [ ! -d node_modules/@confluentinc/kafka-javascript ]; then
    # The package's prebuilt binary comes from GitHub releases and its default source build
    # downloads zlib and OpenSSL sources; neither host is reachable from a registry-only
    # machine. So build from source, linking the librdkafka it carries (2.15.1) dynamically
    # against the system's OpenSSL and zlib (CKJS_LINKING=dynamic: no downloads), with the
    # system Node's own headers (nodedir) instead of node-gyp's download of them.
    nodedir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
    [ -f "$nodedir/include/node/node.h" ] ||
        peers_skip $SUITE "no Node headers under $nodedir/include/node (node-gyp would download them)"
    CKJS_LINKING=dynamic npm_config_build_from_source=true npm_config_nodedir="$nodedir" \
        npm install --no-audit --no-fund >"$PEERS_LOGS/peers-js-install.log" 2>&1 ||
        peers_skip $SUITE "npm install @confluentinc/kafka-javascript failed: $(grep -m1 -E 'error|ENOTFOUND|ETIMEDOUT|ECONNREFUSED|E40[34]' "$PEERS_LOGS/peers-js-install.log" | cut -c1-160)"
    [ -f node_modules/@confluentinc/kafka-javascript/build/Release/confluent-kafka-javascript.node ] ||
        peers_skip $SUITE "npm install did not build the native module (see $PEERS_LOGS/peers-js-install.log)"
fi
start=$SECONDS
start_broker js || exit 1
rc=0
for t in *.test.js; do
    BOOTSTRAP=$BROKER_ADDR timeout 120 node "$t" || rc=1
done
stop_broker || rc=1
echo "kafka-javascript: $([ "$rc" = 0 ] && echo PASSED || echo FAILED) in $((SECONDS - start)) s"
exit $rc
