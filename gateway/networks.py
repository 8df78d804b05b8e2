"""Whether an address belongs to a configured set of networks (trusted proxies, peers allowed
to read the ops endpoints), answered per address from memory after the first time."""

from __future__ import annotations

import ipaddress

from gateway.settings import Network

MAX_REMEMBERED = 10_000  # addresses in X-Forwarded-For are the client's to choose: bound them


class NetworkSet:
    __slots__ = ("networks", "_verdicts")

    def __init__(self, networks: tuple[Network, ...]):
        self.networks = networks
        self._verdicts: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        verdict = self._verdicts.get(address)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return False
            verdict = any(ip in network for network in self.networks)
            if len(self._verdicts) > MAX_REMEMBERED:
                self._verdicts.clear()
            self._verdicts[address] = verdict
        return verdict
