"""Who may talk to a run: which endpoints are local, CURVE keys (``rtkin keys``), the authenticator.

Rule: a socket on a **local** endpoint (``ipc://``, ``inproc://``, ``tcp://`` on a loopback address)
uses ZeroMQ's NULL mechanism, as before. A socket on any other ``tcp://`` address (another host, or
a wildcard bind such as ``tcp://*:5550``) uses libzmq's CURVE (encrypted, and the server admits
only the client keys it knows), unless the configuration says ``insecure = true`` (plaintext,
with a warning on every start). Without either it refuses to bind or connect.

Keys are pyzmq ``zmq.auth`` certificate files (z85 text, ``*.key`` public, ``*.key_secret`` both
halves). ``rtkin keys DIR --client cam01 ...`` writes::

    DIR/server.key             the server's public key: copy to every client host
    DIR/server.key_secret      the server's key pair: stays on the sync host (and IK hosts)
    DIR/authorized/<name>.key  public keys the server admits (add or delete files to change who)
    DIR/clients/<name>.key_secret (+ .key)  one client's key pair: copy to that host only

A process names the folder (``[transport] keys``) and, on a client host, which client it is
(``[transport] client``). Binding needs ``server.key_secret``; connecting needs ``server.key`` and a
client key pair (the sync host's own processes use the server's key pair, always admitted).
"""

from __future__ import annotations

import ipaddress
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import zmq

__all__ = [
    "Curve", "KeyPair", "CurveKeyError", "InsecureEndpointError", "Authenticator", "is_local_endpoint",
    "endpoint_host", "load_curve", "create_keys", "warn_insecure",
]

_LOOPBACK_NAMES = frozenset({"localhost", "lo", "ip6-localhost"})
_WILDCARDS = frozenset({"*", "0.0.0.0", "::", "[::]"})


class CurveKeyError(ValueError):
    """A CURVE key file is missing or unreadable (the message names the file and the way out)."""


class InsecureEndpointError(ValueError):
    """Plaintext on a non-loopback address without ``insecure = true``, or CURVE keys missing."""


def endpoint_host(endpoint: str) -> tuple[str, str]:
    """``(transport, host)`` of a ZeroMQ endpoint: ``("tcp", "10.0.0.2")``, ``("ipc", "")``.

    For ``tcp://source;destination`` the destination's host; IPv6 hosts without brackets.
    """
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise ValueError(f"not a ZeroMQ endpoint: {endpoint!r}")
    if scheme not in ("tcp", "ws", "wss"):
        return scheme, ""
    rest = rest.rsplit(";", 1)[-1]
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return scheme, host.strip("[]")


def is_local_endpoint(endpoint: str) -> bool:
    """True for endpoints no other machine can reach: ``ipc://``, ``inproc://``, loopback ``tcp://``."""
    scheme, host = endpoint_host(endpoint)
    if scheme in ("ipc", "inproc"):
        return True
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a DNS name or an interface name: assume reachable from outside


def is_wildcard_host(host: str) -> bool:
    return host in _WILDCARDS


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, z85-encoded (40 bytes each)."""

    public: bytes
    secret: bytes


@dataclass(frozen=True)
class Curve:
    """The CURVE keys of one process.

    Attributes:
        server: key pair of the sockets this process binds (None: it cannot bind CURVE sockets).
        client: key pair this process presents when connecting (None: it cannot connect).
        server_public: the server key connecting sockets expect (None: cannot connect).
        authorized: public keys admitted by this process's bound sockets (z85).
        folder: where the keys came from (for messages).
    """

    server: KeyPair | None
    client: KeyPair | None
    server_public: bytes | None
    authorized: frozenset[bytes] = field(default_factory=frozenset)
    folder: str = ""


def _read_pair(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    try:
        public, sec = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as e:
        raise CurveKeyError(f"cannot read CURVE key {path}: {e}") from e
    if secret and not sec:
        raise CurveKeyError(f"{path} holds no secret key")
    return public, sec


def load_curve(folder: str | Path, client: str = "") -> Curve:
    """The keys a process finds in ``folder`` (layout in the module docstring).

    ``client`` names this host's client key pair (``clients/<client>.key_secret``); without it
    the server's key pair is the client identity (the sync host's own processes).
    Raises :class:`CurveKeyError` when the folder has neither a server nor a client key.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise CurveKeyError(f"CURVE key folder not found: {root} (create one with `rtkin keys {root} --client NAME`)")
    server = None
    if (root / "server.key_secret").is_file():
        server = KeyPair(*_read_pair(root / "server.key_secret", secret=True))
    server_public = server.public if server else None
    if server_public is None and (root / "server.key").is_file():
        server_public = _read_pair(root / "server.key", secret=False)[0]
    if client:
        path = root / "clients" / f"{client}.key_secret"
        if not path.is_file():
            raise CurveKeyError(f"no client key {path} (made by `rtkin keys {root} --client {client}` on the key host)")
        client_pair = KeyPair(*_read_pair(path, secret=True))
    else:
        client_pair = server
    authorized: set[bytes] = set()
    if server is not None:
        authorized.add(server.public)
        for p in sorted((root / "authorized").glob("*.key")):
            authorized.add(_read_pair(p, secret=False)[0])
    if server is None and client_pair is None:
        raise CurveKeyError(f"{root} holds neither server.key_secret nor a client key; "
                        "name this host's key with [transport] client")
    return Curve(server, client_pair, server_public, frozenset(authorized), str(root))


def create_keys(folder: str | Path, clients: list[str], force: bool = False) -> list[Path]:
    """Write a server key pair (unless one exists) and one key pair per client (see the module
    docstring); returns the files written. An existing client key is an error unless ``force``."""
    import zmq.auth

    root = Path(folder).expanduser()
    for name in clients:
        if not name or "/" in name or "\\" in name or name.startswith(".") or name == "server":
            raise CurveKeyError(f"bad client name {name!r}: letters, digits, '-' or '_' (not 'server')")
    (root / "authorized").mkdir(parents=True, exist_ok=True)
    (root / "clients").mkdir(exist_ok=True)
    written: list[Path] = []
    if not (root / "server.key_secret").exists():
        pub, sec = zmq.auth.create_certificates(str(root), "server")
        Path(sec).chmod(0o600)
        written += [Path(pub), Path(sec)]
    for name in clients:
        target = root / "clients" / f"{name}.key_secret"
        if target.exists() and not force:
            raise CurveKeyError(f"{target} exists; pass --force to replace it (the old key stops working)")
        pub, sec = zmq.auth.create_certificates(str(root / "clients"), name)
        Path(sec).chmod(0o600)
        shutil.copyfile(pub, root / "authorized" / f"{name}.key")
        written += [Path(pub), Path(sec), root / "authorized" / f"{name}.key"]
    return written


class _KeyRing:
    """pyzmq credentials provider: admits the authorized keys, counts refusals per ZAP domain."""

    def __init__(self, authorized: frozenset[bytes]):
        self.authorized = authorized
        self.refused: dict[str, int] = {}
        self.admitted: dict[str, int] = {}
        self.lock = threading.Lock()

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.authorized
        with self.lock:
            book = self.admitted if ok else self.refused
            book[domain] = book.get(domain, 0) + 1
        return ok


class Authenticator:
    """The ZAP handler of one ZeroMQ context (a pyzmq ``ThreadAuthenticator``): CURVE clients whose
    public key is not authorized are refused during the handshake and counted per socket domain."""

    def __init__(self, ctx: zmq.Context, authorized: frozenset[bytes]):
        from zmq.auth.thread import ThreadAuthenticator

        self.keys = _KeyRing(authorized)
        self._auth = ThreadAuthenticator(ctx, log=_quiet_log())
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self.keys)
        self._domains: set[str] = set()

    def domain(self, endpoint: str) -> str:
        """The ZAP domain of a bound socket (refusals are counted per domain)."""
        d = f"rtkin {endpoint}"
        self._auth.configure_curve_callback(domain=d, credentials_provider=self.keys)
        self._domains.add(d)
        return d

    def refused(self, domain: str) -> int:
        with self.keys.lock:
            return self.keys.refused.get(domain, 0)

    def stop(self) -> None:
        self._auth.stop()


def _quiet_log():
    import logging

    log = logging.getLogger("rtkin.auth")
    log.propagate = False
    log.addHandler(logging.NullHandler())
    return log


_warned: set[str] = set()


def warn_insecure(endpoint: str, what: str) -> None:
    """``rtkin: WARNING`` on stderr, once per endpoint and process: plaintext on a network address."""
    if endpoint in _warned:
        return
    _warned.add(endpoint)
    print(f"rtkin: WARNING: {what} {endpoint} in PLAINTEXT (insecure = true): anyone on the network "
          "can read and inject messages; use CURVE keys (`rtkin keys`, [transport] keys)",
          file=sys.stderr, flush=True)
