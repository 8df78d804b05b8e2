"""Who the client is, by address: the TCP peer, or, behind a trusted proxy, the address
that proxy reports in ``X-Forwarded-For``.

An untrusted peer's ``X-Forwarded-For`` is a claim anyone can make, so it is neither
believed nor passed on: the upstream then sees only the peer. Behind trusted proxies the
client is the rightmost address in the chain that is not itself a trusted proxy (the
leftmost ones were written by whoever connected first, and can be anything).
"""

from __future__ import annotations

import ipaddress

from gateway.networks import NetworkSet
from gateway.settings import Network

# (the client's address: keys the failed-key limiter, recorded in the call log;
#  the X-Forwarded-For value sent upstream). A tuple: made on every request.
ClientAddress = tuple[str, bytes]


class ClientAddressResolver:
    def __init__(self, trusted_proxies: tuple[Network, ...]):
        self._trusted = NetworkSet(trusted_proxies)

    def resolve(self, peer: str, x_forwarded_for: bytes | None) -> ClientAddress:
        if not self._trusted or peer not in self._trusted:
            return peer, peer.encode()
        if not x_forwarded_for:
            return peer, peer.encode()
        chain = [hop.strip() for hop in x_forwarded_for.decode("latin-1").split(",")]
        client = peer
        for hop in reversed(chain):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # garbage in the chain: believe nothing to its left
            client = hop
            if hop not in self._trusted:
                break
        return client, x_forwarded_for + b", " + peer.encode()
