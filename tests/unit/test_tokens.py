"""Bearer tokens: what is accepted, what is refused and why, and an identity provider's JWKS."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, generate_private_key
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from jwks import JwksServer
from oms.auth.keys import SigningKey, ensure_key, load_key, public_jwk
from oms.auth.tokens import (
    IdentityProvider,
    InvalidToken,
    Role,
    TokenSource,
    Verifier,
    admin_token,
    customer_token,
    mint,
)


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    path = tmp_path / "auth-key.json"
    assert ensure_key(path)
    return load_key(path)


def verify(verifier: Verifier, token: str) -> Any:
    return asyncio.run(verifier.verify(token))


def refused(verifier: Verifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify(verifier, token)
    return str(caught.value)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_key_file_is_private_created_once_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "auth-key.json"
    assert ensure_key(path)
    first = path.read_bytes()
    assert not ensure_key(path)  # exists: left alone
    assert path.read_bytes() == first
    assert path.stat().st_mode & 0o777 == 0o600
    jwk = orjson.loads(first)
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert load_key(path).kid == jwk["kid"]
    assert "d" not in public_jwk(load_key(path))


def test_roles_from_scope(key: SigningKey) -> None:
    verifier = Verifier(key)
    admin = verify(verifier, admin_token(key))
    assert admin.role is Role.ADMIN
    alice = verify(verifier, customer_token(key, "alice"))
    assert (alice.role, alice.sub, alice.customer_id) == (Role.CUSTOMER, "alice", "alice")
    service = verify(verifier, mint(key, sub="order-service", scope="service", ttl=60))
    assert service.role is Role.SERVICE
    # The service scope is only OrderService's: another subject with it gets nothing.
    assert verify(verifier, mint(key, sub="mallory", scope="service", ttl=60)).role is Role.NONE
    assert verify(verifier, mint(key, sub="bob", scope="profile", ttl=60)).role is Role.NONE


def test_expired_forged_tampered_and_unsigned_tokens_are_refused(key: SigningKey, tmp_path: Path) -> None:
    verifier = Verifier(key)
    assert "expired" in refused(verifier, mint(key, sub="alice", scope="orders", ttl=-120))

    other_path = tmp_path / "other.json"
    ensure_key(other_path)
    other = load_key(other_path)
    assert "unknown key" in refused(verifier, customer_token(other, "alice"))
    # The other key, under our key's id: the signature does not verify.
    forged = jwt.encode(
        {"iss": "oms", "sub": "admin", "scope": "admin", "iat": int(time.time()), "exp": int(time.time()) + 60},
        other.private, algorithm="EdDSA", headers={"kid": key.kid},
    )  # fmt: skip
    assert "signature" in refused(verifier, forged)

    # A customer token whose claims are edited to say admin: the signature no longer matches.
    header, claims, signature = customer_token(key, "alice").split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(claims + "=="))
    payload["scope"] = "admin"
    assert "signature" in refused(verifier, f"{header}.{b64(orjson.dumps(payload))}.{signature}")

    # alg: none, with no signature at all.
    none_header = b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    assert "algorithm" in refused(verifier, f"{none_header}.{b64(orjson.dumps(payload))}.")
    # HS256 keyed with the public key (the classic algorithm confusion).
    assert refused(verifier, f"{b64(orjson.dumps({'alg': 'HS256'}))}.{claims}.{signature}")
    assert "not a JWT" in refused(verifier, "not-a-token")


def test_wrong_issuer_audience_and_missing_claims(key: SigningKey) -> None:
    verifier = Verifier(key)
    now = int(time.time())
    base = {"iss": "oms", "sub": "alice", "scope": "orders", "iat": now, "exp": now + 60}

    def signed(claims: dict[str, Any]) -> str:
        return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})

    assert "issuer" in refused(verifier, signed({**base, "iss": "someone-else"}))
    assert "not meant" in refused(verifier, signed({**base, "aud": "another-api"}))
    assert verify(verifier, signed({**base, "aud": "oms"})).sub == "alice"
    for claim in ("exp", "iat", "sub", "iss"):
        assert refused(verifier, signed({k: v for k, v in base.items() if k != claim}))


def test_a_verified_token_is_remembered_until_it_expires(key: SigningKey) -> None:
    verifier = Verifier(key, cache_size=2)
    token = customer_token(key, "alice")
    assert verifier.cached(token) is None
    verify(verifier, token)
    assert verifier.cached(token) is not None
    for name in ("bob", "carol"):
        verify(verifier, customer_token(key, name))
    assert verifier.cached(token) is None  # the oldest went when the cache was full
    stale = mint(key, sub="dave", scope="orders", ttl=1)
    verify(verifier, stale)
    assert verifier.cached(stale) is not None
    verifier._cache[stale] = verifier._cache[stale].__class__("dave", Role.CUSTOMER, time.time() - 3600)
    assert verifier.cached(stale) is None  # expired: verified again (and refused) next time


def test_token_source_reuses_its_token_until_close_to_expiry(key: SigningKey) -> None:
    now = [1000.0]
    source = TokenSource(key, sub="order-service", scope="service", ttl=100, clock=lambda: now[0])
    first = source.token()
    now[0] += 79
    assert source.token() is first
    now[0] += 2
    assert source.token() is not first


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    served = JwksServer()
    yield served
    served.close()


def _rsa() -> tuple[RSAPrivateKey, dict[str, Any]]:
    private = generate_private_key(public_exponent=65537, key_size=2048)
    return private, RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)


def test_identity_provider_tokens_rs256_and_eddsa_with_refresh_on_an_unknown_kid(
    key: SigningKey, jwks: JwksServer
) -> None:
    provider = IdentityProvider(jwks.url, "https://idp.example", "oms-api")
    verifier = Verifier(key, provider, jwks_cooldown=0)
    rsa, rsa_jwk = _rsa()
    jwks.keys = [{**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"}]
    now = int(time.time())
    claims = {"iss": "https://idp.example", "aud": "oms-api", "sub": "alice", "scope": "orders openid",
              "iat": now, "exp": now + 300}  # fmt: skip
    token = jwt.encode(claims, rsa, algorithm="RS256", headers={"kid": "rsa-1"})
    assert verify(verifier, token).role is Role.CUSTOMER

    # The provider rotates in an Ed25519 key: an unknown kid makes the verifier fetch the JWKS again.
    ed = Ed25519PrivateKey.generate()
    jwks.keys.append({**OKPAlgorithm.to_jwk(ed.public_key(), as_dict=True), "kid": "ed-2", "alg": "EdDSA"})
    fetches = jwks.fetches
    admin = jwt.encode({**claims, "sub": "ops", "scope": "admin"}, ed, algorithm="EdDSA", headers={"kid": "ed-2"})
    assert verify(verifier, admin).role is Role.ADMIN
    assert jwks.fetches > fetches

    assert "issuer" in refused(verifier, jwt.encode({**claims, "iss": "https://evil"}, rsa, algorithm="RS256",
                                                    headers={"kid": "rsa-1"}))  # fmt: skip
    assert "not meant" in refused(verifier, jwt.encode({**claims, "aud": "other"}, rsa, algorithm="RS256",
                                                       headers={"kid": "rsa-1"}))  # fmt: skip
    assert "no key" in refused(verifier, jwt.encode(claims, rsa, algorithm="RS256", headers={"kid": "nope"}))
    # The provider's key may not sign as the local issuer, nor HS256 with its public key.
    other, _ = _rsa()
    assert "signature" in refused(verifier, jwt.encode(claims, other, algorithm="RS256", headers={"kid": "rsa-1"}))
    # Local tokens keep working beside the provider's.
    assert verify(verifier, admin_token(key)).role is Role.ADMIN
