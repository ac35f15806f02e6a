"""An authoritative DNS server on 127.0.0.1 for tests.

It replies over UDP and TCP on one ephemeral port from records added at run
time, so a resolver pointed at it gets real DNS responses: NXDOMAIN for unknown
names, NOERROR with an empty answer for a known name without the requested
type, SERVFAIL or silence where a test asks for them, and truncation over UDP
when an answer does not fit.

    with DnsServer() as dns_server:
        dns_server.add_mx("example.test", 10, "mx1.example.test")
        dns_server.add_a("mx1.example.test", "127.0.0.1")
        resolver = MxResolver([("127.0.0.1", dns_server.port)])
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections import defaultdict
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["DnsServer"]

_DEFAULT_TTL = 300
_PLAIN_UDP_PAYLOAD = 512
_BIND_ATTEMPTS = 20
_MAX_CNAME_CHAIN = 8


class DnsServer:
    """A threaded authoritative DNS server whose zone tests edit while it runs."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._records: dict[
            dns.name.Name, dict[dns.rdatatype.RdataType, list[tuple[int, str]]]
        ] = defaultdict(dict)
        self._servfail: set[dns.name.Name] = set()
        self._unresponsive: set[dns.name.Name] = set()
        self._queries: list[tuple[str, str]] = []
        self._udp: socketserver.UDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []

    # Zone editing

    def add_mx(
        self, domain: str, preference: int, host: str, *, ttl: int = _DEFAULT_TTL
    ) -> None:
        self._add(domain, dns.rdatatype.MX, f"{preference} {_absolute(host)}", ttl)

    def add_null_mx(self, domain: str, *, ttl: int = _DEFAULT_TTL) -> None:
        """Publish ``MX 0 .``: the domain accepts no mail (RFC 7505)."""
        self._add(domain, dns.rdatatype.MX, "0 .", ttl)

    def add_a(self, host: str, address: str, *, ttl: int = _DEFAULT_TTL) -> None:
        self._add(host, dns.rdatatype.A, address, ttl)

    def add_aaaa(self, host: str, address: str, *, ttl: int = _DEFAULT_TTL) -> None:
        self._add(host, dns.rdatatype.AAAA, address, ttl)

    def add_cname(self, name: str, target: str, *, ttl: int = _DEFAULT_TTL) -> None:
        """Publish a CNAME; queries for other types get it and the target's records."""
        self._add(name, dns.rdatatype.CNAME, _absolute(target), ttl)

    def add_txt(self, name: str, text: str, *, ttl: int = _DEFAULT_TTL) -> None:
        """Publish a TXT record, split into 255-byte strings as DNS requires."""
        encoded = text.encode()
        chunks = [encoded[i : i + 255] for i in range(0, len(encoded), 255)] or [b""]
        quoted = " ".join(_quote_txt(chunk) for chunk in chunks)
        self._add(name, dns.rdatatype.TXT, quoted, ttl)

    def set_servfail(self, domain: str) -> None:
        """Reply to every query for ``domain`` with SERVFAIL."""
        with self._lock:
            self._servfail.add(_name(domain))

    def set_unresponsive(self, domain: str) -> None:
        """Drop every query for ``domain`` without a reply, so resolvers time out."""
        with self._lock:
            self._unresponsive.add(_name(domain))

    def remove(self, name: str) -> None:
        """Forget every record of ``name`` and any failure mode set for it."""
        key = _name(name)
        with self._lock:
            self._records.pop(key, None)
            self._servfail.discard(key)
            self._unresponsive.discard(key)

    @property
    def queries(self) -> list[tuple[str, str]]:
        """Questions received so far as ``(name, type)``, for example
        ``("example.test", "MX")``."""
        with self._lock:
            return list(self._queries)

    def query_count(self, name: str, rdtype: str) -> int:
        expected = (name.rstrip(".").lower(), rdtype.upper())
        return sum(1 for query in self.queries if query == expected)

    # Lifecycle

    def start(self) -> None:
        self._udp, self._tcp = self._bind_pair()
        self.port = self._udp.server_address[1]
        for server in (self._udp, self._tcp):
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"dns-server-{self.port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._udp = self._tcp = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Answering

    def answer(self, wire: bytes, max_size: int | None) -> bytes | None:
        """Return the wire-format response to one query, or ``None`` to drop it.

        ``max_size`` is the UDP payload limit; ``None`` means TCP.
        """
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if len(query.question) != 1:
            return None

        question = query.question[0]
        name, rdtype = question.name, dns.rdatatype.RdataType(question.rdtype)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        with self._lock:
            self._queries.append(
                (name.to_text(omit_final_dot=True).lower(), rdtype.name)
            )
            if name in self._unresponsive:
                return None
            self._fill(response, name, rdtype)

        return _to_wire(query, response, max_size)

    def _fill(
        self,
        response: dns.message.Message,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
    ) -> None:
        if name in self._servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return
        if name not in self._records:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return

        # Follow CNAMEs inside the zone, as an authoritative server does
        # (RFC 1034 section 4.3.2), for at most _MAX_CNAME_CHAIN links.
        for _ in range(_MAX_CNAME_CHAIN):
            aliases = self._records.get(name, {}).get(dns.rdatatype.CNAME, [])
            if rdtype == dns.rdatatype.CNAME or not aliases:
                break
            response.answer.append(_rrset(name, dns.rdatatype.CNAME, aliases))
            name = dns.name.from_text(aliases[0][1])
        records = self._records.get(name, {}).get(rdtype, [])
        if records:
            response.answer.append(_rrset(name, rdtype, records))

    def _add(
        self, name: str, rdtype: dns.rdatatype.RdataType, text: str, ttl: int
    ) -> None:
        # Parse now, so a typo fails in the test that made it.
        dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)
        with self._lock:
            self._records[_name(name)].setdefault(rdtype, []).append((ttl, text))

    def _bind_pair(
        self,
    ) -> tuple[socketserver.UDPServer, socketserver.ThreadingTCPServer]:
        # UDP takes an ephemeral port; TCP must get the same number, which
        # another process may hold, so try a few ports.
        for _ in range(_BIND_ATTEMPTS):
            udp = _UdpServer((self.host, 0), self)
            try:
                tcp = _TcpServer((self.host, udp.server_address[1]), self)
            except OSError:
                udp.server_close()
                continue
            return udp, tcp
        raise OSError(
            f"no port on {self.host} was free for both UDP and TCP after "
            f"{_BIND_ATTEMPTS} attempts"
        )


def _rrset(
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    records: list[tuple[int, str]],
) -> dns.rrset.RRset:
    ttl = min(record_ttl for record_ttl, _ in records)
    return dns.rrset.from_text_list(
        name, ttl, dns.rdataclass.IN, rdtype, [text for _, text in records]
    )


class _UdpServer(socketserver.UDPServer):
    def __init__(self, address: tuple[str, int], zone: DnsServer) -> None:
        self.zone = zone
        super().__init__(address, _UdpHandler)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], zone: DnsServer) -> None:
        self.zone = zone
        super().__init__(address, _TcpHandler)


class _UdpHandler(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        wire, sock = self.request
        reply = self.server.zone.answer(wire, max_size=_PLAIN_UDP_PAYLOAD)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        while True:
            header = _receive_exactly(sock, 2)
            if header is None:
                return
            (length,) = struct.unpack("!H", header)
            wire = _receive_exactly(sock, length)
            if wire is None:
                return
            reply = self.server.zone.answer(wire, max_size=None)
            if reply is None:
                return
            sock.sendall(struct.pack("!H", len(reply)) + reply)


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _to_wire(
    query: dns.message.Message, response: dns.message.Message, max_size: int | None
) -> bytes:
    if max_size is None:
        return response.to_wire()

    if query.edns >= 0:
        max_size = max(query.payload, _PLAIN_UDP_PAYLOAD)
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        truncated = dns.message.make_response(query)
        truncated.flags |= dns.flags.AA | dns.flags.TC
        return truncated.to_wire()


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _absolute(host: str) -> str:
    return host if host.endswith(".") else f"{host}."


def _quote_txt(chunk: bytes) -> str:
    """Quote one character-string in zone-file syntax, escaping bytes as needed."""
    characters = []
    for byte in chunk:
        if byte in b'"\\':
            characters.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            characters.append(chr(byte))
        else:
            characters.append(f"\\{byte:03d}")
    return '"' + "".join(characters) + '"'
