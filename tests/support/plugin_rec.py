#!/usr/bin/env python3
"""A network plugin for lnet's remote-driver tests: Docker's plugin protocol on a unix
socket, a veth-and-bridge driver made with `ip`, and a record of every call.

    plugin_rec.py SOCKET STATE_DIR

Every call is appended to STATE_DIR/calls.jsonl as {"call": "Join", "body": {...}}. A
file STATE_DIR/fail-<Method> makes that method answer {"Err": "rec refuses <Method>"};
STATE_DIR/hang-<Method> makes it wait 60 s before answering. Its networks are bridges
`rb<first 8 of the id>` with the gateway lnet gives; a join is a veth pair
`rh<7>`/`rc<7>` (host end on the bridge, the other handed over), with a static route to
198.51.100.0/24 on the link.
"""

import json
import os
import socketserver
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler

SOCKET, STATE = sys.argv[1], sys.argv[2]
NETWORKS = {}  # id -> gateway ("10.55.0.1/24")


def ip(*args):
    subprocess.run(["ip", *args], check=False, capture_output=True)


def bridge(net_id):
    return "rb" + net_id[:8]


def answer(method, body):
    if method == "Plugin.Activate":
        return {"Implements": ["NetworkDriver"]}
    m = method.split(".", 1)[1]
    if os.path.exists(os.path.join(STATE, "hang-" + m)):
        time.sleep(60)
    if os.path.exists(os.path.join(STATE, "fail-" + m)):
        return {"Err": "rec refuses " + m}
    if m == "GetCapabilities":
        return {"Scope": "local", "ConnectivityScope": "local"}
    if m == "CreateNetwork":
        nid = body["NetworkID"]
        gw = (body.get("IPv4Data") or [{}])[0].get("Gateway", "")
        NETWORKS[nid] = gw
        ip("link", "add", bridge(nid), "type", "bridge")
        if gw:
            ip("addr", "add", gw, "dev", bridge(nid))
        ip("link", "set", bridge(nid), "up")
        return {}
    if m == "DeleteNetwork":
        ip("link", "del", bridge(body["NetworkID"]))
        return {}
    if m in ("CreateEndpoint", "DeleteEndpoint", "ProgramExternalConnectivity",
             "RevokeExternalConnectivity"):
        return {}
    if m == "EndpointOperInfo":
        return {"Value": {"rec": "yes"}}
    if m == "Join":
        eid, nid = body["EndpointID"], body["NetworkID"]
        host, peer = "rh" + eid[:7], "rc" + eid[:7]
        ip("link", "add", host, "type", "veth", "peer", "name", peer)
        ip("link", "set", host, "master", bridge(nid))
        ip("link", "set", host, "up")
        gw = NETWORKS.get(nid, "").split("/")[0]
        return {
            "InterfaceName": {"SrcName": peer, "DstPrefix": "eth"},
            "Gateway": gw,
            "StaticRoutes": [{"Destination": "198.51.100.0/24", "RouteType": 1, "NextHop": ""}],
        }
    if m == "Leave":
        ip("link", "del", "rh" + body["EndpointID"][:7])
        return {}
    return None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        method = self.path.lstrip("/")
        with open(os.path.join(STATE, "calls.jsonl"), "a") as f:
            f.write(json.dumps({"call": method.split(".", 1)[-1], "body": body}) + "\n")
        out = answer(method, body)
        status = 200 if out is not None else 404
        data = json.dumps(out if out is not None else {"Err": "no such call " + method}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        # BaseHTTPRequestHandler wants a client address; a unix socket has none to give.
        request, _ = super().get_request()
        return request, ("plugin", 0)


if os.path.exists(SOCKET):
    os.unlink(SOCKET)
Server(SOCKET, Handler).serve_forever()
