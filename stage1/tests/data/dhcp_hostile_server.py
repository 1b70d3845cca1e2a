"""A hostile DHCP server for stage1's DHCP client test.

Usage: dhcp_hostile_server.py IFACE SERVER_IP MODE
Run inside the server's network namespace (`ip netns exec`).

MODE `hostile-then-good`: to every DISCOVER it first sends a burst of bad
replies (wrong xid, another MAC, a BOOTREQUEST, truncated, an option whose
length makes dhcproto desynchronise or panic, a proxyDHCP-style offer with
no address, no END option), then one good OFFER; to the first REQUEST it
answers a NAK claiming another server id (to be ignored), then a real NAK
(the client must start over); to the next REQUEST a good ACK.

MODE `never-good`: only the bad burst, and a NAK to any REQUEST: the client
must give up at its timeout without configuring anything.

Prints one line per packet it handles (for the test's failure output).
"""
import socket
import struct
import sys

iface, server_ip, mode = sys.argv[1], sys.argv[2], sys.argv[3]
SERVER = socket.inet_aton(server_ip)
ROGUE = socket.inet_aton("10.198.0.66")
net = server_ip.rsplit(".", 1)[0]
OFFERED = socket.inet_aton(net + ".77")
COOKIE = bytes([99, 130, 83, 99])


def opt(code, value):
    return bytes([code, len(value)]) + value


def packet(op, xid, chaddr, yiaddr, options, end=True):
    head = struct.pack("!BBBB", op, 1, 6, 0) + xid + struct.pack("!HH", 0, 0x8000)
    head += bytes(4) + yiaddr + bytes(4) + bytes(4)
    head += chaddr.ljust(16, b"\0") + bytes(64) + bytes(128)
    body = COOKIE + b"".join(options) + (b"\xff" if end else b"")
    return (head + body).ljust(300, b"\0") if end else head + body


def reply_opts(kind, server=SERVER):
    return [
        opt(53, bytes([kind])),
        opt(54, server),
        opt(1, socket.inet_aton("255.255.255.0")),
        opt(3, SERVER),
        opt(51, struct.pack("!I", 600)),
    ]


def bad_burst(xid, chaddr):
    other_xid = bytes([xid[0] ^ 0xFF]) + xid[1:]
    good = packet(2, xid, chaddr, OFFERED, reply_opts(2))
    return [
        ("wrong xid", packet(2, other_xid, chaddr, OFFERED, reply_opts(2))),
        ("other mac", packet(2, xid, b"\x02\x00\x00\x00\x00\x99", OFFERED, reply_opts(2))),
        ("bootrequest", packet(1, xid, chaddr, OFFERED, reply_opts(2))),
        ("truncated", good[:120]),
        ("option 81 of 1 byte", packet(2, xid, chaddr, OFFERED, reply_opts(2) + [opt(81, b"\0")])),
        ("lease time of 2 bytes", packet(2, xid, chaddr, OFFERED, [opt(53, b"\x02"), opt(54, SERVER), opt(51, b"\0\1")])),
        ("proxy offer, no address", packet(2, xid, chaddr, bytes(4), reply_opts(2) + [opt(60, b"HTTPClient")])),
        ("no END", packet(2, xid, chaddr, OFFERED, reply_opts(2), end=False)),
    ]


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 67))
print("ready", flush=True)
requests = 0
while True:
    data, _ = s.recvfrom(2048)
    if len(data) < 240 or data[0] != 1:
        continue
    xid, chaddr = data[4:8], data[28:34]
    kind = None
    i = 240
    while i + 1 < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        if data[i] == 53:
            kind = data[i + 2]
        i += 2 + data[i + 1]
    out = []
    if kind == 1:  # DISCOVER
        out = bad_burst(xid, chaddr)
        if mode == "hostile-then-good":
            out.append(("good offer", packet(2, xid, chaddr, OFFERED, reply_opts(2))))
    elif kind == 3:  # REQUEST
        requests += 1
        if mode == "hostile-then-good" and requests > 1:
            out = [("ack", packet(2, xid, chaddr, OFFERED, reply_opts(5)))]
        else:
            out = [
                ("nak from a rogue server id", packet(2, xid, chaddr, bytes(4), [opt(53, b"\x06"), opt(54, ROGUE)])),
                ("nak", packet(2, xid, chaddr, bytes(4), [opt(53, b"\x06"), opt(54, SERVER), opt(56, b"go away")])),
            ]
    for name, p in out:
        print(f"kind {kind}: sending {name}", flush=True)
        s.sendto(p, ("255.255.255.255", 68))
