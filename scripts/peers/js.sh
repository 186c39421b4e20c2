#!/usr/bin/env bash
# kafka-javascript (the @confluentinc/kafka-javascript npm package's client) against a tidelog
# broker this script starts: tests/js/*.test.js, each a plain node script.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
SUITE=kafka-javascript
command -v npm >/dev/null || peers_skip $SUITE "no node/npm (apt-get install nodejs npm)"
cd "$PEERS_ROOT/tests/js"
if [ ! -d node_modules/@confluentinc/kafka-javascript ]; then
    npm install --no-audit --no-fund >"$PEERS_LOGS/peers-js-install.log" 2>&1 ||
        peers_skip $SUITE "npm install @confluentinc/kafka-javascript failed (its prebuilt binary comes from GitHub releases, its fallback build downloads zlib/OpenSSL): $(grep -m1 -E 'Download of|ENOTFOUND|ETIMEDOUT|ECONNREFUSED|E40[34]' "$PEERS_LOGS/peers-js-install.log" | cut -c1-160)"
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
