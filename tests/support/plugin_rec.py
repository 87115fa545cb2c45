#!/usr/bin/env python3
"""A network and IPAM plugin for lnet's remote-driver tests: Docker's plugin protocol on a
unix socket, a veth-and-bridge driver made with `ip`, an IPAM, and a record of every call.

    plugin_rec.py SOCKET STATE_DIR

Every call is appended to STATE_DIR/calls.jsonl as {"call": "Join", "body": {...}}. A
file STATE_DIR/fail-<Method> makes that method answer {"Err": "rec refuses <Method>"};
STATE_DIR/hang-<Method> makes it wait 60 s before answering. Its networks are bridges
`rb<first 8 of the id>` with the gateway lnet gives; a join is a veth pair
`rh<7>`/`rc<7>` (host end on the bridge, the other handed over), with a static route to
198.51.100.0/24 on the link.

Its IPAM's address spaces are `recl` and `recg`; a pool asked for by subnet is that subnet,
any other the next free 10.200.N.0/24 (fd00:200:N::/64 for IPv6); pool ids are
`rec:<pool>`. Addresses are the lowest free host (the first for a gateway), or the one
asked for. What it holds is written to STATE_DIR/ipam.json after every change, as
{pool id: [addresses]}; IPAM calls are recorded as "IpamDriver.<Method>".
"""

import ipaddress
import json
import os
import threading
import socketserver
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler

SOCKET, STATE = sys.argv[1], sys.argv[2]
NETWORKS = {}  # id -> gateway ("10.55.0.1/24")
POOLS = {}  # pool id -> (ip_network, set of addresses)
LOCK = threading.Lock()


def ipam_save():
    out = {pid: sorted(str(a) for a in used) for pid, (_, used) in POOLS.items()}
    tmp = os.path.join(STATE, "ipam.json.tmp")
    with open(tmp, "w") as f:
        json.dump(out, f, sort_keys=True)
    os.replace(tmp, os.path.join(STATE, "ipam.json"))


def ipam(m, body):
    if m == "GetCapabilities":
        return {"RequiresMACAddress": False}
    if m == "GetDefaultAddressSpaces":
        return {"LocalDefaultAddressSpace": "recl", "GlobalDefaultAddressSpace": "recg"}
    if m == "RequestPool":
        taken = [n for n, _ in POOLS.values()]
        if body.get("Pool"):
            net = ipaddress.ip_network(body["Pool"], strict=False)
            if any(net.overlaps(t) for t in taken):
                return {"Err": "rec: pool %s overlaps a pool it gave" % net}
        else:
            for n in range(256):
                net = ipaddress.ip_network(
                    "fd00:200:%x::/64" % n if body.get("V6") else "10.200.%d.0/24" % n)
                if not any(net.overlaps(t) for t in taken):
                    break
        pid = "rec:%s" % net
        POOLS[pid] = (net, set())
        ipam_save()
        return {"PoolID": pid, "Pool": str(net), "Data": {}}
    if m == "ReleasePool":
        if POOLS.pop(body.get("PoolID"), None) is None:
            return {"Err": "rec: no pool %s" % body.get("PoolID")}
        ipam_save()
        return {}
    if m == "RequestAddress":
        pool = POOLS.get(body.get("PoolID"))
        if pool is None:
            return {"Err": "rec: no pool %s" % body.get("PoolID")}
        net, used = pool
        if body.get("Address"):
            a = ipaddress.ip_address(body["Address"])
            if a not in net:
                return {"Err": "rec: %s is not in %s" % (a, net)}
            if a in used:
                return {"Err": "rec: %s is in use" % a}
        else:
            a = next((h for h in net.hosts() if h not in used), None)
            if a is None:
                return {"Err": "rec: %s is full" % net}
        used.add(a)
        ipam_save()
        return {"Address": "%s/%d" % (a, net.prefixlen), "Data": {}}
    if m == "ReleaseAddress":
        pool = POOLS.get(body.get("PoolID"))
        a = ipaddress.ip_address(body.get("Address", "0.0.0.0"))
        if pool is None or a not in pool[1]:
            return {"Err": "rec: %s is not given out" % a}
        pool[1].discard(a)
        ipam_save()
        return {}
    return None


def ip(*args):
    subprocess.run(["ip", *args], check=False, capture_output=True)


def bridge(net_id):
    return "rb" + net_id[:8]


def answer(method, body):
    if method == "Plugin.Activate":
        return {"Implements": ["NetworkDriver", "IpamDriver"]}
    m = method.split(".", 1)[1]
    if os.path.exists(os.path.join(STATE, "hang-" + m)):
        time.sleep(60)
    if os.path.exists(os.path.join(STATE, "fail-" + m)):
        return {"Err": "rec refuses " + m}
    if method.startswith("IpamDriver."):
        with LOCK:
            return ipam(m, body)
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
            name = method if method.startswith("IpamDriver.") else method.split(".", 1)[-1]
            f.write(json.dumps({"call": name, "body": body}) + "\n")
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
