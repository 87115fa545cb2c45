"""Docker SDK for Python against lnet: networks create/list/get/connect/disconnect/remove/prune.

Run by tests/docker_api.rs: networks.py SOCKET SANDBOX_NAME. Prints "ok" at the end.
"""
import sys

import docker

sock, sandbox = sys.argv[1], sys.argv[2]
client = docker.DockerClient(base_url="unix://" + sock, version="auto")
assert client.ping() is True
assert client.version()["ApiVersion"]

ipam = docker.types.IPAMConfig(
    pool_configs=[docker.types.IPAMPool(subnet="10.88.0.0/24", gateway="10.88.0.1")]
)
net = client.networks.create("sdknet", driver="bridge", ipam=ipam, labels={"made-by": "sdk"})
assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.88.0.0/24", net.attrs
assert [n.name for n in client.networks.list(names=["sdknet"])] == ["sdknet"]
assert [n.name for n in client.networks.list(filters={"label": "made-by=sdk"})] == ["sdknet"]
assert client.networks.get(net.id[:12]).name == "sdknet"

net.connect(sandbox, ipv4_address="10.88.0.50", aliases=["db"])
net.reload()
members = net.attrs["Containers"]
assert [m["IPv4Address"] for m in members.values()] == ["10.88.0.50/24"], members
assert [m["Name"] for m in members.values()] == [sandbox], members
net.disconnect(sandbox)
net.reload()
assert net.attrs["Containers"] == {}, net.attrs

try:
    client.networks.get("no-such-network")
    raise AssertionError("a missing network was found")
except docker.errors.NotFound:
    pass
try:
    client.networks.create("sdknet")
    raise AssertionError("a duplicate name was accepted")
except docker.errors.APIError as e:
    assert e.status_code == 409, e
try:
    client.networks.create("badnet", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="10.88.0.0/33")]))
    raise AssertionError("a bad subnet was accepted")
except docker.errors.APIError as e:
    assert e.status_code == 400 and "Subnet" in str(e), e

net.remove()
client.networks.create("sdk-dangling")
pruned = client.networks.prune()
assert pruned["NetworksDeleted"] == ["sdk-dangling"], pruned
assert sorted(n.name for n in client.networks.list()) == ["bridge", "host", "none"]
print("ok")
