"""The system's signing key: one Ed25519 private JWK in a file that every service of a system reads.

``ensure_key`` creates it when missing, atomically (a temporary file linked into place), so services
that start at once all end up with the one key whoever wrote it first."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from oms.errors import OmsError
from oms.files import private_dir


class KeyFileError(OmsError):
    """The key file cannot be read or is not an Ed25519 private JWK."""


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    kid: str
    """RFC 7638 thumbprint of the public key: tokens name it in their header."""
    path: Path

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint of an OKP key (members crv, kty, x in that order, no spaces)."""
    canonical = orjson.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]})
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def ensure_key(path: Path) -> bool:
    """Create the key file at ``path`` (mode 0600) unless it exists. True when it was created."""
    if path.exists():
        return False
    private_dir(path.parent)
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate(), as_dict=True)
    jwk["kid"] = thumbprint(jwk)
    jwk["alg"] = "EdDSA"
    jwk["use"] = "sig"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".auth-key-")
    try:
        os.fchmod(handle, 0o600)
        os.write(handle, orjson.dumps(jwk, option=orjson.OPT_INDENT_2) + b"\n")
        os.fsync(handle)
        os.close(handle)
        try:
            os.link(temporary, path)  # fails if another process made it first: theirs stands
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def load_key(path: Path) -> SigningKey:
    try:
        jwk = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc}") from exc
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" not in jwk:
        raise KeyFileError(f"{path} is not an Ed25519 private JWK")
    try:
        private = OKPAlgorithm.from_jwk(jwk)
    except Exception as exc:
        raise KeyFileError(f"{path}: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private JWK")
    return SigningKey(private, str(jwk.get("kid") or thumbprint(jwk)), path)


def public_jwk(key: SigningKey) -> dict[str, Any]:
    """The public half as a JWK (for a JWKS document)."""
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key.public, as_dict=True)
    return {**jwk, "kid": key.kid, "alg": "EdDSA", "use": "sig"}
