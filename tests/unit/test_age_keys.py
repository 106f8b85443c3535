"""age keys: bech32, recipients and identities against age-keygen, identity files."""

from __future__ import annotations

import hmac
import os
import re
import subprocess
from collections import deque
from pathlib import Path

import pyrage
import pytest

from bascule.age import keys
from bascule.age.keys import Bech32Error, bech32_decode, bech32_encode, hkdf_sha256, hmac_sha256
from bascule.age.stream import (
    X25519Identity,
    X25519Recipient,
    encrypt_stream,
    load_identities,
    parse_recipients,
    write_identity_file,
)
from bascule.errors import ConfigError

AGE_KEYGEN = "/usr/bin/age-keygen"
Pool = dict[bytes, deque[tuple[bytes, bytes]]]


def keygen() -> tuple[str, str]:
    """(secret, public) from the reference age-keygen."""
    out = subprocess.run([AGE_KEYGEN], capture_output=True, text=True, check=True).stdout
    secret = next(line for line in out.splitlines() if line.startswith("AGE-SECRET-KEY-1"))
    public = next(line for line in out.splitlines() if "public key:" in line).split(": ")[1]
    return secret, public


def test_keygen_identity_round_trips() -> None:
    secret, public = keygen()
    identity = X25519Identity.parse(secret)
    assert str(identity.recipient()) == public
    assert identity.to_secret_string() == secret
    assert X25519Recipient.parse(public) == identity.recipient()


def test_our_identity_is_read_by_age_keygen(tmp_path: Path) -> None:
    identity = X25519Identity.generate()
    path = tmp_path / "id.txt"
    write_identity_file(path, identity, "2026-01-01T00:00:00+00:00")
    public = subprocess.run(
        [AGE_KEYGEN, "-y", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert public == str(identity.recipient())


@pytest.mark.parametrize(
    "valid",
    # BIP 173 valid bech32 strings (checksum constant 1)
    [
        "A12UEL5L",
        "a12uel5l",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    ],
)
def test_bech32_accepts_bip173_vectors(valid: str) -> None:
    hrp, data = bech32_decode(valid)
    assert bech32_encode(hrp, data) == valid.lower()


@pytest.mark.parametrize(
    ("invalid", "why"),
    [
        ("A1G7SGD8", "checksum"),  # BIP 173: checksum calculated with uppercase hrp
        ("a12UEL5L", "mixed"),
        ("1nwldj5", "separator"),
        ("abc1b", "separator"),  # data part too short for a checksum
        ("age1qqqqqqqqqqqqqqqqqbqqqqqq", "character"),
    ],
)
def test_bech32_rejects(invalid: str, why: str) -> None:
    with pytest.raises(Bech32Error, match=why):
        bech32_decode(invalid)


def test_identity_never_shows_its_secret() -> None:
    identity = X25519Identity.generate()
    secret = identity.to_secret_string()
    assert secret not in repr(identity)
    assert secret not in str(identity)
    assert str(identity.recipient()) in repr(identity)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("age1pq1qyqszqgpqyqszqgpqyqszqgp", "only age X25519"),
        ("age1yubikey1qyqszqgpqyqszqgpqyqszqgp", "only age X25519"),
        ("ssh-ed25519 AAAAC3Nza", "only age X25519"),
        ("AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0", "age1"),
        ("age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gp", "checksum"),
        (bech32_encode("age", bytes(20)), "holds 32 bytes, this one 20"),
    ],
)
def test_recipient_parse_errors(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        X25519Recipient.parse(value)


def test_an_x25519_key_that_starts_like_a_post_quantum_one_parses() -> None:
    # 5-bit groups 1 ('p') and 0 ('q') first: one generated key in 1,024 reads "age1pq...".
    key = bytes([0x08, 0x00]) + bytes(range(30))
    text = bech32_encode("age", key)
    assert text.startswith("age1pq")
    assert X25519Recipient.parse(text).public_bytes == key


def test_parse_recipients_names_the_bad_index() -> None:
    good = str(X25519Identity.generate().recipient())
    assert parse_recipients([good]) == [X25519Recipient.parse(good)]
    with pytest.raises(ConfigError, match=r"recipient 2 of 3 \('age1oops'\)"):
        parse_recipients([good, "age1oops", good])


def test_parse_recipients_never_echoes_a_secret_key() -> None:
    secret = X25519Identity.generate().to_secret_string()
    with pytest.raises(ConfigError, match="redacted") as info:
        parse_recipients([secret])
    assert secret not in str(info.value)


def test_identity_parse_rejects_pq_and_lowercase() -> None:
    with pytest.raises(ValueError, match="post-quantum"):
        X25519Identity.parse("AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU")
    secret = X25519Identity.generate().to_secret_string()
    with pytest.raises(ValueError, match="uppercase") as info:
        X25519Identity.parse(secret.lower())
    assert secret.lower() not in str(info.value)


def test_write_identity_file_is_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "id.txt"
    old_umask = os.umask(0)
    try:
        write_identity_file(path, X25519Identity.generate(), "now")
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_identity_file(path, X25519Identity.generate(), "now")


def test_load_identities_reads_comments_and_several_keys(tmp_path: Path) -> None:
    first, second = X25519Identity.generate(), X25519Identity.generate()
    path = tmp_path / "ids.txt"
    path.write_text(
        f"# comment\n\n{first.to_secret_string()}\n  # indented comment\n"
        f"{second.to_secret_string()}\n"
    )
    path.chmod(0o600)
    loaded = load_identities(path)
    assert [i.recipient() for i in loaded] == [first.recipient(), second.recipient()]


def test_load_identities_refuses_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text(X25519Identity.generate().to_secret_string() + "\n")
    path.chmod(0o640)
    with pytest.raises(ConfigError, match=re.escape(f"chmod 600 {path}")):
        load_identities(path)


def test_load_identities_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*bascule keys generate"):
        load_identities(tmp_path / "absent.txt")


def test_load_identities_bad_line_is_named_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    secret = X25519Identity.generate().to_secret_string()
    broken = secret[:-1] + ("Q" if secret[-1] != "Q" else "P")
    path.write_text(f"# one\n{secret}\n{broken}\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"line 3: .*checksum") as info:
        load_identities(path)
    assert broken not in str(info.value)


def test_load_identities_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("# nothing here\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="holds no identity"):
        load_identities(path)


def test_wrap_uses_a_fresh_ephemeral_key_each_time() -> None:
    """The stanza's AEAD uses a fixed nonce: a repeated share would repeat its key."""
    recipient = X25519Identity.generate().recipient()
    file_key = os.urandom(16)
    shares = {recipient.wrap(file_key)[0] for _ in range(50)}
    assert len(shares) == 50


def test_wrap_and_unwrap_agree_across_libraries() -> None:
    """Shares made with libsodium open with the identity's OpenSSL key (and 32 bytes each)."""
    identity = X25519Identity.generate()
    file_key = os.urandom(16)
    share, body = identity.recipient().wrap(file_key)
    assert len(share) == 32
    assert identity.unwrap(share, body) == file_key
    assert X25519Identity.generate().unwrap(share, body) is None


def test_wrap_refuses_a_low_order_recipient() -> None:
    with pytest.raises(ValueError, match="low-order"):
        X25519Recipient(bytes(32)).wrap(os.urandom(16))


def test_parse_recipients_refuses_a_low_order_key() -> None:
    low_order = bech32_encode("age", bytes(32))
    with pytest.raises(ConfigError, match=r"recipient 2 of 2 .* low-order"):
        parse_recipients([str(X25519Identity.generate().recipient()), low_order])


# RFC 5869 A.1 and A.3: (IKM, salt, info, first 32 bytes of OKM)
_HKDF_VECTORS = [
    (
        bytes([0x0B] * 22),
        bytes(range(13)),
        bytes(range(0xF0, 0xFA)),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf",
    ),
    (
        bytes([0x0B] * 22),
        b"",
        b"",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "okm"), _HKDF_VECTORS)
def test_hkdf_sha256_matches_rfc_5869(ikm: bytes, salt: bytes, info: bytes, okm: str) -> None:
    assert hkdf_sha256(ikm, salt, info).hex() == okm


@pytest.mark.parametrize("key_len", [0, 16, 32, 63, 64, 65, 200])
def test_hmac_sha256_matches_the_stdlib_and_hkdf_matches_cryptography(key_len: int) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key, msg = os.urandom(key_len), os.urandom(97)
    assert hmac_sha256(key, msg) == hmac.digest(key, msg, "sha256")
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=key, info=msg[:20]).derive(msg)
    assert hkdf_sha256(msg, key, msg[:20]) == expected


@pytest.fixture()
def ready_pool(monkeypatch: pytest.MonkeyPatch) -> Pool:
    """A pool of precomputed ephemerals of this test's own."""
    pool: Pool = {}
    monkeypatch.setattr(keys, "_READY", pool)
    return pool


def test_precomputed_ephemerals_are_each_used_once_then_made_afresh(
    ready_pool: Pool, tmp_path: Path
) -> None:
    identity = X25519Identity.generate()
    recipient = str(identity.recipient())
    assert keys.precompute_ephemerals([recipient], 3, stop=lambda: False) == 3
    assert keys.ready_ephemerals(recipient) == 3
    made = list(ready_pool[identity.recipient().public_bytes])
    file_key = os.urandom(16)
    wrapped = [identity.recipient().wrap(file_key) for _ in range(5)]
    assert [share for share, _ in wrapped[:3]] == [share for share, _ in made]
    assert len({share for share, _ in wrapped}) == 5  # the pool empty, fresh ones follow
    assert keys.ready_ephemerals(recipient) == 0
    assert all(identity.unwrap(share, body) == file_key for share, body in wrapped)
    keys.precompute_ephemerals([recipient], 2, stop=lambda: False)
    src, out = tmp_path / "plain", tmp_path / "plain.age"
    src.write_bytes(os.urandom(70_000))
    with src.open("rb") as fin, out.open("wb") as fout:
        encrypt_stream(fin, fout, [identity.recipient()])
    assert keys.ready_ephemerals(recipient) == 1  # the file's stanza took one
    rage = pyrage.x25519.Identity.from_str(identity.to_secret_string())
    assert pyrage.decrypt(out.read_bytes(), [rage]) == src.read_bytes()


def test_precomputing_stops_when_asked(ready_pool: Pool) -> None:
    recipient = str(X25519Identity.generate().recipient())
    asked = iter([False, False, True])
    assert keys.precompute_ephemerals([recipient], stop=lambda: next(asked)) == 2
    assert keys.ready_ephemerals(recipient) == 2
