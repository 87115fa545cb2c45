#!/usr/bin/env bash
# lnet's main job, end to end: start `lnet daemon`, make a network with the docker CLI (or
# lnet's own when docker is not installed), create two sandboxes, connect them, publish a
# port, and send real packets — then stop and remove everything.
#
# It runs in a throwaway network and mount namespace, with its state in a temporary
# directory, so it never touches this machine's interfaces, routes, firewall or /run/lnet.
# Run as root from anywhere: `scripts/quickstart.sh`. It first installs what it uses and is
# missing (scripts/deps.sh quickstart: iproute2, util-linux, python3, a C linker for cargo);
# Rust itself, from rustup, is the one thing it expects.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
  [ "$(id -u)" = 0 ] || { echo "quickstart: run it as root (it creates namespaces, links and nftables rules), e.g. in a root shell: $0" >&2; exit 1; }
  scripts/deps.sh quickstart
  cargo build --locked --quiet --bin lnet
  exec unshare --net --mount --propagation private "$0" --inside
fi

bin=$PWD/target/debug/lnet
lnet() { "$bin" "$@"; }
dir=$(mktemp -d)
ip link set lo up
echo '{}' > "$dir/daemon.json"
# The binary `cargo build` makes is the one users get: it has no failpoints, so the armed
# one below must change nothing (a test build would abort at the network's creation).
LNET_FAILPOINT=network-create:recorded \
"$bin" daemon --data-root "$dir/data" --exec-root "$dir/run" -H "unix://$dir/lnet.sock" \
  --plugin-socket "$dir/plugins/lnet.sock" \
  --config-file "$dir/daemon.json" --log-level warn &
daemon=$!
cleanup() { kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$dir/lnet.sock" ] && lnet -H "unix://$dir/lnet.sock" version >/dev/null 2>&1 && break; sleep 0.05; done

export LNET_HOST="unix://$dir/lnet.sock"
show() { printf '\n$ %s\n' "$*"; "$@"; }

if command -v docker >/dev/null; then
  dk() { docker -H "$LNET_HOST" "$@"; }
  show dk network create --subnet 10.200.0.0/24 --gateway 10.200.0.1 demo
  show dk network ls
else
  show lnet network create --subnet 10.200.0.0/24 --gateway 10.200.0.1 demo
  show lnet network ls
fi
show lnet sandbox create --hostname web web
show lnet sandbox create --hostname client client
show lnet network connect --ip 10.200.0.10 --publish 8080:80 demo web
show lnet network connect --alias cli demo client
show lnet sandbox ls

# A tiny HTTP server in `web`, answering two requests.
lnet sandbox exec web -- python3 -c '
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from web (%s), you are %s\n" % (self.server.server_address[0], self.client_address[0])).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
with socketserver.TCPServer(("0.0.0.0", 80), H) as s:
    s.handle_request(); s.handle_request()
' &
server=$!
sleep 0.5
cat > "$dir/get.py" <<'PY'
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")
PY
cd "$dir"
show lnet sandbox exec client -- python3 get.py http://10.200.0.10/
show python3 get.py http://127.0.0.1:8080/
wait "$server"
show lnet sandbox exec client -- cat /etc/hosts

show lnet network disconnect demo web
show lnet network disconnect demo client
show lnet sandbox rm web client
show lnet network rm demo
echo
echo "quickstart: done; the daemon stops and its namespace goes with it"
