"""Bearer tokens (RFC 7519 JWTs): who a caller is, and what it may do.

Tokens the system mints itself are EdDSA (Ed25519), issuer ``oms``, signed with the key file's key.
An identity provider's tokens (RS256 or EdDSA) are accepted too when its JWKS URL is configured.

Verifying an Ed25519 signature costs about 150 µs here, and an order makes four authenticated calls,
so a verified token is remembered, by its exact text, until it expires: the second call with the
same token costs a dictionary lookup. A refused token is remembered too (by a digest of its text, for
``REFUSAL_TTL`` seconds, the newest ``cache_size``): sending the same forged or expired token again
costs what a request without a token does, not a signature check.

What a caller is told of a refusal (:attr:`InvalidToken.public`) is ``invalid_token``, or that the
token expired, nothing more: not whether a stolen token's signature was genuine, nor which check
failed. The reason itself (``str(exc)``) is for the service's log.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from oms.auth.keys import SigningKey
from oms.errors import OmsError

LOCAL_ISSUER = "oms"
SERVICE_SUBJECT = "order-service"
LEEWAY = 30
"""Seconds of clock difference tolerated on ``exp`` and ``iat``."""
REFUSAL_TTL = 60.0
"""Seconds a refused token's refusal is remembered (a token not yet valid, or signed with a key the
identity provider publishes later, is verified again after that)."""


class Role(StrEnum):
    ADMIN = "admin"
    SERVICE = "service"
    CUSTOMER = "customer"
    NONE = "none"
    """A valid token that grants nothing here."""


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    expires: float
    """Unix time after which the token is no longer valid."""

    @property
    def customer_id(self) -> str | None:
        return self.sub if self.role is Role.CUSTOMER else None


class InvalidToken(OmsError):
    """No token, or one that cannot be trusted. ``str(exc)`` is the reason, for the log; ``public``
    what the caller is told."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired

    @property
    def public(self) -> str:
        return "The token has expired." if self.expired else "The token is not valid (invalid_token)."


def role_of(sub: str, scopes: set[str]) -> Role:
    if "admin" in scopes:
        return Role.ADMIN
    if "service" in scopes and sub == SERVICE_SUBJECT:
        return Role.SERVICE
    if "orders" in scopes:
        return Role.CUSTOMER
    return Role.NONE


def customer_of(token: str | None) -> str | None:
    """The customer a customer's token is for, read without checking its signature (the command line
    fills in the order's customer with it; the service checks the token): ``None`` for any other
    token, or what is not a JWT."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    if isinstance(sub, str) and sub and role_of(sub, _scopes(claims)) is Role.CUSTOMER:
        return sub
    return None


def _scopes(claims: dict[str, Any]) -> set[str]:
    scope = claims.get("scope", claims.get("scp", ""))
    if isinstance(scope, str):
        return set(scope.split())
    if isinstance(scope, list):
        return {str(s) for s in scope}
    return set()


def mint(key: SigningKey, *, sub: str, scope: str, ttl: float) -> str:
    now = int(time.time())
    claims = {"iss": LOCAL_ISSUER, "sub": sub, "scope": scope, "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})


def admin_token(key: SigningKey, ttl: float = 3600) -> str:
    return mint(key, sub="admin", scope="admin", ttl=ttl)


def customer_token(key: SigningKey, customer_id: str, ttl: float = 3600) -> str:
    return mint(key, sub=customer_id, scope="orders", ttl=ttl)


class TokenSource:
    """A token minted once and reused until it is close to expiry (OrderService's service token)."""

    def __init__(self, key: SigningKey, *, sub: str, scope: str, ttl: float = 600, clock: Any = time.time) -> None:
        self.key = key
        self.sub = sub
        self.scope = scope
        self.ttl = ttl
        self.clock = clock
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        now = self.clock()
        if now >= self._renew_at:
            self._token = mint(self.key, sub=self.sub, scope=self.scope, ttl=self.ttl)
            self._renew_at = now + self.ttl * 0.8
        return self._token


@dataclass(frozen=True)
class IdentityProvider:
    jwks_url: str
    issuer: str
    audience: str


class Verifier:
    """Turns a bearer token into a ``Principal`` or raises ``InvalidToken``."""

    def __init__(
        self,
        key: SigningKey,
        provider: IdentityProvider | None = None,
        *,
        cache_size: int = 10_000,
        jwks_cooldown: float = 5.0,
    ) -> None:
        self.key = key
        self.provider = provider
        # The JWKS is cached for 5 minutes and fetched again for a kid it lacks (a rotated key), but
        # not more often than every ``jwks_cooldown`` seconds: made-up kids cannot hammer the provider.
        self._jwks = None
        if provider is not None:
            self._jwks = jwt.PyJWKClient(
                provider.jwks_url, cache_keys=True, lifespan=300, timeout=5, cooldown_duration=jwks_cooldown
            )
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size
        # Plain values, not the exceptions (which hold PyJWT's and their frames): tuples of atoms
        # are left out of the garbage collector's passes.
        self._refused: OrderedDict[bytes, tuple[str, bool, float]] = OrderedDict()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired (no signature check)."""
        principal = self._cache.get(token)
        if principal is None:
            return None
        if principal.expires + LEEWAY < time.time():
            del self._cache[token]
            return None
        return principal

    def refused(self, token: str) -> InvalidToken | None:
        """The refusal of a token refused less than ``REFUSAL_TTL`` seconds ago (no signature check)."""
        if not self._refused:
            return None
        found = self._refused.get(_digest(token))
        if found is None:
            return None
        reason, expired, until = found
        if until < time.monotonic():
            del self._refused[_digest(token)]
            return None
        return InvalidToken(reason, expired=expired)

    async def verify(self, token: str) -> Principal:
        principal = self.cached(token)
        if principal is not None:
            return principal
        refusal = self.refused(token)
        if refusal is not None:
            raise refusal
        try:
            principal = await self._verify(token)
        except InvalidToken as exc:
            if len(self._refused) >= self._cache_size:
                self._refused.popitem(last=False)
            self._refused[_digest(token)] = (str(exc), exc.expired, time.monotonic() + REFUSAL_TTL)
            raise
        if len(self._cache) >= self._cache_size:
            self._cache.popitem(last=False)
        self._cache[token] = principal
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("the token is not a JWT") from exc
        kid = header.get("kid")
        if kid is None or kid == self.key.kid:
            claims = self._decode(token, self.key.public, ["EdDSA"], LOCAL_ISSUER, None)
        elif self._jwks is not None and self.provider is not None:
            try:
                # PyJWKClient fetches over blocking HTTP (once per refresh, or for an unknown kid).
                signing = await asyncio.to_thread(self._jwks.get_signing_key, str(kid))
            except jwt.PyJWKClientError as exc:
                raise InvalidToken(f"no key {kid!r} at the identity provider") from exc
            claims = self._decode(token, signing.key, ["RS256", "EdDSA"], self.provider.issuer, self.provider.audience)
        else:
            raise InvalidToken(f"the token is signed with an unknown key {kid!r}")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("the token has no subject")
        return Principal(sub, role_of(sub, _scopes(claims)), float(claims["exp"]))

    @staticmethod
    def _decode(token: str, key: Any, algorithms: list[str], issuer: str, audience: str | None) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=issuer,
                audience=audience,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "sub", "iss"], "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired", expired=True) from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("the token's issuer is not trusted") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("the token is not meant for this service") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise InvalidToken("the token's algorithm is not accepted") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("the token's signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is invalid: {exc}") from exc
        if audience is None and claims.get("aud") not in (None, LOCAL_ISSUER, [LOCAL_ISSUER]):
            raise InvalidToken("the token is not meant for this service")
        return claims


def _digest(token: str) -> bytes:
    """What a refused token is remembered by: 16 bytes, however long its text (a forged token may be
    as long as the header limit)."""
    return hashlib.blake2b(token.encode("latin-1", "replace"), digest_size=16).digest()
