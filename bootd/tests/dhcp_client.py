"""A DHCP client for bootd's proxyDHCP test: sends the given packets (hex,
one per line on stdin) as broadcasts from port 68 on an interface, then
prints every reply received (hex, one per line) for a while.

Usage: dhcp_client.py IFACE SECONDS < packets.hex
Run inside the client's network namespace (`ip netns exec`).
"""
import socket
import sys
import time

iface, seconds = sys.argv[1], float(sys.argv[2])
packets = [bytes.fromhex(l.strip()) for l in sys.stdin if l.strip()]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
for p in packets:
    s.sendto(p, ("255.255.255.255", 67))
s.settimeout(0.2)
end = time.time() + seconds
while time.time() < end:
    try:
        data, _ = s.recvfrom(2048)
        print(data.hex(), flush=True)
    except socket.timeout:
        pass
