"""Gradual rollout: who gets reranking, by client network, index and percentage.

The first rule that matches decides the mode (``on``, ``off``, ``shadow`` or ``interleave``);
otherwise the default applies. The client address is the TCP peer or, when the peer is a configured
trusted proxy, the right-most address not of a trusted proxy in the one forwarding header
those proxies write (``rollout.proxy_header``: ``X-Forwarded-For``, or RFC 7239
``Forwarded``). All lines of that header are one list (RFC 9110 5.3), so a line a client
wrote before the proxy appended its own is just more hops on the left, never the answer.
Entries may carry a port (``ip:port``, ``[v6]:port``). A per-request override header is
honoured only from configured trusted clients.

Rules can be reloaded at run time (SIGHUP, admin API). A reload swaps one immutable
:class:`RuleSet` for another, so in-flight requests finish with the rules they started with,
and a bad file leaves the rules in force untouched.

The UBI guard (:mod:`sidecar.ubi.guard`) can trip the rollout: when users' clicks show ES's
own order significantly better, every rule (and the default) that serves ``on`` or
``interleave`` serves ``off`` until the rules are reloaded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from sidecar.config import ModeName, RolloutConfig, RolloutRule, read_yaml
from sidecar.errors import ConfigError
from sidecar.netmatch import Address, Network, parse_address
from sidecar.netmatch import in_networks as _in
from sidecar.netmatch import parse_networks as _networks

log = logging.getLogger("sidecar.rollout")

_MODES: tuple[ModeName, ...] = ("on", "off", "shadow", "interleave")
#: The modes that rerank what users see (a tripped guard turns them off).
RERANKING: tuple[ModeName, ...] = ("on", "interleave")


def bucket(addr: Address | None) -> float:
    """A stable position in [0, 100) for a client, the same on every replica."""
    if addr is None:
        return 0.0
    digest = hashlib.sha256(addr.packed).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100.0


@dataclass(frozen=True)
class CompiledRule:
    rule: RolloutRule
    clients: tuple[Network, ...]

    def matches(self, addr: Address | None, indices: Sequence[str]) -> bool:
        if self.clients and (addr is None or not _in(addr, self.clients)):
            return False
        if self.rule.indices and not all(
            any(fnmatchcase(ix, pat) for pat in self.rule.indices) for ix in indices or ["*"]
        ):
            return False
        return self.rule.percent >= 100 or bucket(addr) < self.rule.percent


def forwarded_for(lines: Sequence[str]) -> list[str]:
    """The ``for=`` node of each element of RFC 7239 ``Forwarded`` lines, left to right. An
    element without one, or with ``unknown`` / an obfuscated ``_id``, is a hop of no known
    address (it stops the walk: nothing to its left can be believed)."""
    hops: list[str] = []
    for element in _split_quoted(",".join(lines), ","):
        node = ""
        for pair in _split_quoted(element, ";"):
            name, sep, value = pair.partition("=")
            if sep and name.strip().lower() == "for":
                node = value.strip()
        hops.append(node or "unknown")
    return hops


def _split_quoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double-quoted strings (which may contain it, and escapes)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


class Headers(Protocol):
    def get(self, key: str, default: str, /) -> str: ...
    def getall(self, key: str, default: list[str], /) -> list[str]: ...


@dataclass(frozen=True)
class Client:
    addr: Address | None
    #: The mode a trusted client asked for with the override header.
    override: ModeName | None


@dataclass(frozen=True)
class Decision:
    mode: ModeName
    rule: str


@dataclass(frozen=True)
class RuleSet:
    default: ModeName
    rules: tuple[CompiledRule, ...]
    source: str

    @classmethod
    def build(cls, default: ModeName, rules: Sequence[RolloutRule], source: str) -> RuleSet:
        return cls(default, tuple(CompiledRule(r, _networks(r.clients)) for r in rules), source)

    def decide(self, addr: Address | None, indices: Sequence[str]) -> tuple[ModeName, str]:
        for i, compiled in enumerate(self.rules):
            if compiled.matches(addr, indices):
                return compiled.rule.mode, compiled.rule.name or f"rule[{i}]"
        return self.default, "default"


def load_rules_file(path: Path) -> RuleSet:
    """Parse and validate a rules file; raises ConfigError naming the problem."""
    data: dict[str, Any] = read_yaml(path)
    unknown = sorted(set(data) - {"default", "rules"})
    if unknown:
        raise ConfigError(f"rules file {path}: {unknown[0]}: unknown key")
    default = {True: "on", False: "off"}.get(data.get("default", "on"), data.get("default"))
    if default not in _MODES:
        raise ConfigError(f"rules file {path}: default: must be one of {', '.join(_MODES)}")
    rules = data.get("rules") or []
    if not isinstance(rules, list):
        raise ConfigError(f"rules file {path}: rules: must be a list")
    parsed: list[RolloutRule] = []
    for i, raw in enumerate(rules):
        try:
            parsed.append(RolloutRule.model_validate(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"rules file {path}: rules[{i}].{where}: {err['msg']}") from exc
    return RuleSet.build(default, parsed, str(path))


class Rollout:
    def __init__(self, config: RolloutConfig) -> None:
        self.config = config
        self._trusted_proxies = _networks(config.trusted_proxies)
        self._trusted_clients = _networks(config.trusted_clients)
        self.rules = RuleSet.build(config.default, config.rules, "config")
        self.last_error: str | None = None
        #: Why the guard turned reranking off (None: it has not); until the next reload.
        self.tripped: str | None = None
        #: When the rules in force were loaded (UTC): the guard judges them from then on.
        self.loaded_at = datetime.now(UTC)
        if config.rules_file is not None:
            self.rules = load_rules_file(config.rules_file)

    def trip(self, reason: str) -> None:
        """The guard found ES's own order better: ``on`` and ``interleave`` serve ``off``
        until the next reload."""
        if self.tripped is None:
            log.warning("rollout: reranking turned off by the UBI guard: %s", reason)
        self.tripped = reason

    def reload(self) -> RuleSet:
        """Re-read the rules file (and clear a tripped guard). On error the current rules
        stay and the error is kept."""
        if self.tripped is not None:
            log.info("rollout: the UBI guard's trip is cleared by a reload")
        self.tripped = None
        self.loaded_at = datetime.now(UTC)
        if self.config.rules_file is None:
            self.last_error = None
            return self.rules
        try:
            new = load_rules_file(self.config.rules_file)
        except ConfigError as exc:
            self.last_error = str(exc)
            log.error("rollout rules not reloaded, keeping the current ones: %s", exc)
            raise
        self.rules = new
        self.last_error = None
        log.info("rollout rules reloaded from %s (%d rules)", new.source, len(new.rules))
        return new

    def client(self, peer: str | None, headers: Headers) -> Client:
        """Who is asking, read once per request: the client address behind trusted proxies,
        and the override header when a trusted client sent one."""
        addr = parse_address(peer)
        override: ModeName | None = None
        wanted = headers.get(self.config.override_header, "").strip().lower()
        if wanted and addr is not None and _in(addr, self._trusted_clients) and wanted in _MODES:
            override = wanted
        return Client(self._behind_proxies(addr, self._hops(headers)), override)

    def _hops(self, headers: Headers) -> list[str]:
        """The forwarding hops, left to right, from the configured header only."""
        if self.config.proxy_header == "forwarded":
            return forwarded_for(headers.getall("Forwarded", []))
        # Repeated fields are one list (RFC 9110 5.3): a trusted proxy appends its own line.
        return ",".join(headers.getall("X-Forwarded-For", [])).split(",")

    def _behind_proxies(self, addr: Address | None, hops: list[str]) -> Address | None:
        if addr is None or not any(h.strip() for h in hops):
            return addr
        if not _in(addr, self._trusted_proxies):
            return addr
        # Walk from the right: the first hop that is not one of our trusted proxies is the
        # client. Anything further left could have been written by anyone.
        for item in reversed(hops):
            hop = parse_address(item)
            if hop is None:
                return addr
            if not _in(hop, self._trusted_proxies):
                return hop
            addr = hop
        return addr

    def decide(self, client: Client, indices: Sequence[str]) -> Decision:
        if client.override is not None:
            return Decision(client.override, "override")
        mode, rule = self.rules.decide(client.addr, indices)
        if self.tripped is not None and mode in RERANKING:
            return Decision("off", f"{rule} (guard)")
        return Decision(mode, rule)
