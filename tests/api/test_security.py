"""Authentication, scopes and protected mode, attack by attack, through real servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.api.conftest import Server, make_server, problem
from tests.api.feeds import frames
from tests.api.test_cli import cairn

SECRET = "s3cret-for-tests-only-0123456789abcdef"
AUDIENCE, ISSUER = "cairn", "https://issuer.test"


def token(scope: str = "admin", *, secret: str = SECRET, ttl: int = 300, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "alice",
        "scope": scope,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def unauthorized(response: httpx.Response, *, token_sent: bool = True) -> None:
    body = problem(response, 401)
    # RFC 6750 §3.1: a refused token is invalid_token; no token at all gets no error code.
    challenge = 'Bearer error="invalid_token"' if token_sent else "Bearer"
    assert response.headers["www-authenticate"] == challenge
    assert body["detail"] == "a valid bearer token is required"  # never which check failed


def forbidden(response: httpx.Response) -> None:
    problem(response, 403)
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server(
        tmp_path_factory.mktemp("secure"),
        "--jwt-secret",
        SECRET,
        "--jwt-audience",
        AUDIENCE,
        "--jwt-issuer",
        ISSUER,
    ).start()
    admin = httpx.Client(base_url=server.url, headers=bearer(token()))
    for name in ("orders.eu", "orders.us", "billing"):
        admin.post("/v1/queues", json={"name": name})
    admin.close()
    yield server
    server.stop()


@pytest.fixture
def anon(secure: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secure.url, timeout=30) as client:
        yield client


def test_a_missing_token_is_401_with_a_bearer_challenge(anon: httpx.Client) -> None:
    unauthorized(anon.get("/v1/queues"), token_sent=False)
    unauthorized(anon.post("/v1/queues/orders.eu/messages", json={"body": 1}), token_sent=False)


@pytest.mark.parametrize("header", ["Bearer", "Basic " + b64(b"alice:pw")])
def test_no_bearer_credential_at_all_is_401_without_an_error_code(
    anon: httpx.Client, header: str
) -> None:
    unauthorized(anon.get("/v1/queues", headers={"Authorization": header}), token_sent=False)


@pytest.mark.parametrize("header", ["Bearer not-a-jwt", "Bearer a.b.c", "bearer  x.y"])
def test_a_malformed_credential_is_401(anon: httpx.Client, header: str) -> None:
    unauthorized(anon.get("/v1/queues", headers={"Authorization": header}))


def test_a_token_signed_with_another_key_is_401(anon: httpx.Client) -> None:
    unauthorized(anon.get("/v1/queues", headers=bearer(token(secret="x" * 40))))


def test_an_unsigned_alg_none_token_is_401(anon: httpx.Client) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = jwt.decode(token(), options={"verify_signature": False})
    unsigned = f"{header}.{b64(json.dumps(claims).encode())}."
    unauthorized(anon.get("/v1/queues", headers=bearer(unsigned)))


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 60},  # expired (beyond the leeway)
        {"nbf": int(time.time()) + 3600},  # not yet valid
        {"aud": "someone-else"},
        {"iss": "https://evil.test"},
        {"exp": None},  # no exp at all
        {"aud": None},  # audience configured but missing
        {"sub": None},
        {"exp": str(int(time.time()) + 3600)},  # a NumericDate is a number (RFC 7519 §2)
        {"nbf": str(int(time.time()) - 60)},
        {"scope": ["admin"]},  # scope is a space-separated string
    ],
    ids=[
        "expired",
        "future-nbf",
        "wrong-aud",
        "wrong-iss",
        "missing-exp",
        "missing-aud",
        "no-sub",
        "string-exp",
        "string-nbf",
        "list-scope",
    ],
)
def test_claims_that_fail_are_401(anon: httpx.Client, claims: dict[str, Any]) -> None:
    unauthorized(anon.get("/v1/queues", headers=bearer(token(**claims))))


@pytest.mark.parametrize(
    ("scope", "method", "path", "body", "allowed"),
    [
        ("publish:orders.*", "POST", "/v1/queues/orders.eu/messages", {"body": 1}, True),
        ("publish:orders.*", "POST", "/v1/queues/billing/messages", {"body": 1}, False),
        ("publish:orders.eu", "POST", "/v1/queues/orders.us/messages", {"body": 1}, False),
        ("publish:orders.*", "POST", "/v1/queues/orders.eu/receive", {}, False),
        ("consume:orders.*", "POST", "/v1/queues/orders.eu/receive", {}, True),
        ("consume:orders.*", "POST", "/v1/queues/orders.eu/messages", {"body": 1}, False),
        ("consume:orders.*", "POST", "/v1/queues/billing/receive", {}, False),
        ("read:orders.*", "GET", "/v1/queues/orders.us", None, True),
        ("read:orders.*", "GET", "/v1/queues/billing", None, False),
        ("read:orders.*", "GET", "/v1/queues/orders.us/analytics", None, True),
        ("read:orders.*", "GET", "/v1/queues/billing/analytics", None, False),
        ("publish:*", "GET", "/v1/queues/billing/analytics", None, False),
        ("read:orders.*", "POST", "/v1/queues/orders.eu/messages", {"body": 1}, False),
        ("read:orders.*", "POST", "/v1/queues/orders.eu/purge", None, False),
        ("read:*", "PATCH", "/v1/queues/billing", {"delay_s": 1}, False),
        ("queues:manage", "PATCH", "/v1/queues/billing", {"delay_s": 0}, True),
        ("queues:manage", "POST", "/v1/queues/billing/messages", {"body": 1}, False),
        ("queues:manage", "GET", "/v1/events", None, False),
        ("events:read", "GET", "/v1/events", None, True),
        ("publish:*", "POST", "/v1/queues", {"name": "sneaky"}, False),
        ("publish:orders.* consume:orders.*", "DELETE", "/v1/queues/orders.eu", None, False),
        ("", "GET", "/v1/projections", None, True),
        ("", "GET", "/v1/queues/orders.eu", None, False),
    ],
)
def test_scopes_grant_exactly_their_actions_on_their_queues(
    anon: httpx.Client, scope: str, method: str, path: str, body: Any, allowed: bool
) -> None:
    response = anon.request(method, path, json=body, headers=bearer(token(scope)))
    if allowed:
        assert response.status_code < 400, response.text
    else:
        forbidden(response)


def test_finding_a_message_by_id_shows_only_readable_queues(anon: httpx.Client) -> None:
    admin = bearer(token())
    secret = anon.post("/v1/queues/billing/messages", json={"body": "s"}, headers=admin).json()
    mine = anon.post("/v1/queues/orders.eu/messages", json={"body": "m"}, headers=admin).json()
    reader = bearer(token("read:orders.*"))
    wait = {"min_position": mine["position"]}
    assert anon.get(f"/v1/messages/{mine['id']}", params=wait, headers=reader).status_code == 200
    problem(anon.get(f"/v1/messages/{secret['id']}", params=wait, headers=reader), 404)
    problem(anon.get(f"/v1/messages/{mine['id']}", headers=bearer(token("publish:*"))), 404)


def test_listings_show_only_readable_queues(anon: httpx.Client) -> None:
    listed = anon.get("/v1/queues", headers=bearer(token("read:orders.*"))).json()["queues"]
    assert {q["name"] for q in listed} == {"orders.eu", "orders.us"}
    forbidden(anon.get("/v1/queues", headers=bearer(token("publish:*"))))


def test_a_page_counts_only_the_queues_the_token_may_read(anon: httpx.Client) -> None:
    # orders.eu sorts between billing and orders.us: unreadable, it is neither shown nor counted.
    reader = bearer(token("read:billing read:orders.us"))
    first = anon.get("/v1/queues", params={"limit": 1}, headers=reader).json()
    assert [q["name"] for q in first["queues"]] == ["billing"]
    assert first["next_after"] == "billing"
    rest = anon.get("/v1/queues", params={"limit": 1, "after": "billing"}, headers=reader).json()
    assert [q["name"] for q in rest["queues"]] == ["orders.us"]
    assert rest["next_after"] is None


def test_the_log_and_feeds_never_show_another_queues_events(
    anon: httpx.Client, secure: Server
) -> None:
    admin = bearer(token())
    anon.post("/v1/queues/billing/messages", json={"body": "secret"}, headers=admin)
    anon.post("/v1/queues/orders.eu/messages", json={"body": "mine"}, headers=admin)
    reader = bearer(token("read:orders.*"))
    page = anon.get("/v1/events", params={"limit": 1000}, headers=reader).json()
    assert {e["queue"] for e in page["events"]} == {"orders.eu", "orders.us"}
    assert page["next_after"] >= max(e["position"] for e in page["events"])
    forbidden(anon.get("/v1/events", params={"queue": "billing"}, headers=reader))
    forbidden(anon.get("/v1/queues/billing/events/stream", headers=reader))
    head = anon.get("/v1/projections", headers=reader).json()["head"]
    with anon.stream("GET", "/v1/events/stream", params={"after": 0}, headers=reader) as feed:
        seen: list[dict[str, Any]] = []
        anon.post("/v1/queues/billing/messages", json={"body": "later secret"}, headers=admin)
        anon.post("/v1/queues/orders.us/messages", json={"body": "later mine"}, headers=admin)
        for frame in frames(feed):
            if frame.id is not None:
                seen.append(frame.data)
                if frame.data["data"].get("body") == "later mine":
                    break
    assert {e["queue"] for e in seen} == {"orders.eu", "orders.us"}
    assert any(e["position"] > head for e in seen)


def test_a_dead_letter_move_shows_each_side_only_to_its_readers(anon: httpx.Client) -> None:
    admin = bearer(token())
    source, dlq = f"orders.dl-{uuid.uuid4().hex[:6]}", f"hidden-{uuid.uuid4().hex[:6]}"
    anon.post("/v1/queues", json={"name": dlq}, headers=admin)
    anon.post(
        "/v1/queues",
        json={"name": source, "max_receive_count": 1, "dead_letter_queue": dlq},
        headers=admin,
    )
    published = anon.post(f"/v1/queues/{source}/messages", json={"body": 1}, headers=admin).json()
    consumer = bearer(token(f"consume:{source}"))
    [message] = anon.post(f"/v1/queues/{source}/receive", json={}, headers=consumer).json()[
        "messages"
    ]
    nack = anon.post(
        f"/v1/queues/{source}/messages/{message['id']}/nack",
        json={"receipt": message["receipt"]},
        headers=consumer,
    )
    assert nack.status_code == 204  # moving it on is the queue's rule, not the consumer's act
    reader = bearer(token("read:orders.*"))
    events = anon.get(
        "/v1/events", params={"after": published["position"] - 1}, headers=reader
    ).json()["events"]
    assert [e["type"] for e in events if e["message_id"] == published["id"]][-1] == (
        "message.dead_lettered"
    )
    assert all(e["queue"] != dlq for e in events)


def test_a_browser_feed_may_carry_its_token_in_the_query(anon: httpx.Client) -> None:
    with anon.stream(
        "GET",
        "/v1/queues/orders.eu/events/stream",
        params={"after": 0, "access_token": token("read:orders.*")},
    ) as feed:
        assert feed.status_code == 200
    unauthorized(anon.get("/v1/queues", params={"access_token": token()}), token_sent=False)


def test_a_feed_ends_when_its_token_expires(anon: httpx.Client) -> None:
    short = token("read:orders.*", ttl=2)
    started = time.monotonic()
    with anon.stream("GET", "/v1/events/stream", headers=bearer(short)) as feed:
        received = list(frames(feed))  # ends only when the server ends the stream
    assert received[0].retry is not None
    assert time.monotonic() - started < 2 + 5 + 3  # ttl + leeway + a second's check


def _rsa_pem(directory: Path) -> tuple[Path, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "rsa.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path, key


def test_rs256_tokens_work_and_hs256_with_the_public_key_does_not(tmp_path: Path) -> None:
    path, key = _rsa_pem(tmp_path)
    server = make_server(tmp_path, "--jwt-public-key", str(path)).start()
    try:
        claims = {"sub": "svc", "scope": "admin", "exp": int(time.time()) + 60}
        good = jwt.encode(claims, key, algorithm="RS256")
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/v1/queues", headers=bearer(good)).status_code == 200
            # Key confusion: HMAC over the token, keyed with the public key's PEM bytes.
            head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            body = b64(json.dumps(claims).encode())
            signature = hmac.new(path.read_bytes(), f"{head}.{body}".encode(), hashlib.sha256)
            forged = f"{head}.{body}.{b64(signature.digest())}"
            unauthorized(client.get("/v1/queues", headers=bearer(forged)))
            unauthorized(client.get("/v1/queues", headers=bearer(token())))  # HS256 at all
    finally:
        server.stop()


def test_a_jwks_file_selects_keys_by_kid_for_rotation(tmp_path: Path) -> None:
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks = {
        "keys": [
            {
                **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(k.public_key())),
                "kid": kid,
                "alg": "ES256",
            }
            for kid, k in (("2026-old", old), ("2026-new", new))
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    server = make_server(tmp_path, "--jwt-public-key", str(path)).start()
    try:
        claims = {"sub": "svc", "scope": "admin", "exp": int(time.time()) + 60}
        with httpx.Client(base_url=server.url) as client:
            for kid, key in (("2026-old", old), ("2026-new", new)):
                signed = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})
                assert client.get("/v1/queues", headers=bearer(signed)).status_code == 200
            wrong_kid = jwt.encode(claims, new, algorithm="ES256", headers={"kid": "2026-old"})
            unauthorized(client.get("/v1/queues", headers=bearer(wrong_kid)))
            unknown = jwt.encode(claims, new, algorithm="ES256", headers={"kid": "nope"})
            unauthorized(client.get("/v1/queues", headers=bearer(unknown)))
            no_kid = jwt.encode(claims, new, algorithm="ES256")
            unauthorized(client.get("/v1/queues", headers=bearer(no_kid)))
    finally:
        server.stop()


def test_operational_endpoints_need_no_token(anon: httpx.Client) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):  # /metrics does (tests/api/test_metrics)
        assert anon.get(path).status_code == 200


def test_protected_mode_refuses_a_public_address_without_a_key(tmp_path: Path) -> None:
    result = cairn("serve", "--host", "0.0.0.0", "--database-url", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert "--jwt-secret" in line and "Traceback" not in result.stderr


def test_insecure_no_auth_is_an_explicit_choice(tmp_path: Path) -> None:
    server = make_server(tmp_path, "--host", "0.0.0.0", "--insecure-no-auth").start()
    try:
        assert httpx.get(f"{server.url}/v1/queues").status_code == 200
    finally:
        server.stop()


def test_cairn_token_mints_what_the_server_accepts(secure: Server) -> None:
    minted = cairn(
        "token",
        "--sub",
        "bob",
        "--scope",
        "read:orders.*",
        "--ttl",
        "60",
        env={
            "CAIRN_JWT_SECRET": SECRET,
            "CAIRN_JWT_AUDIENCE": AUDIENCE,
            "CAIRN_JWT_ISSUER": ISSUER,
        },
    )
    assert minted.returncode == 0, minted.stderr
    value = minted.stdout.strip()
    claims = jwt.decode(value, SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["sub"] == "bob" and claims["exp"] - claims["iat"] == 60
    with httpx.Client(base_url=secure.url) as client:
        assert client.get("/v1/queues/orders.eu", headers=bearer(value)).status_code == 200
        forbidden(client.get("/v1/queues/billing", headers=bearer(value)))
    assert cairn("token", "--sub", "x", "--scope", "admin").returncode != 0


def test_strings_are_stored_and_returned_exactly(anon: httpx.Client) -> None:
    admin = bearer(token())
    nasty = "<script>alert('x')</script>\u0000\u202e' OR 1=1; --"
    published = anon.post(
        "/v1/queues/orders.eu/messages",
        json={"body": nasty, "attributes": {"k": nasty}},
        headers=admin,
    )
    assert published.status_code == 201
    detail = anon.get(
        f"/v1/queues/orders.eu/messages/{published.json()['id']}",
        params={"min_position": published.json()["position"]},
        headers=admin,
    )
    assert detail.json()["body"] == nasty and detail.json()["attributes"] == {"k": nasty}


@pytest.fixture
def depth_server(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path, env={"CAIRN_MAX_JSON_DEPTH": "8"}).start()
    yield server
    server.stop()


def test_json_nesting_deeper_than_the_limit_is_422_and_writes_nothing(depth_server: Server) -> None:
    with httpx.Client(base_url=depth_server.url) as client:
        client.post("/v1/queues", json={"name": "d"})
        before = client.get("/v1/projections").json()["head"]
        shallow = json.loads("[" * 6 + "]" * 6)
        assert client.post("/v1/queues/d/messages", json={"body": shallow}).status_code == 201
        deep = json.loads("[" * 8 + "]" * 8)
        problem(client.post("/v1/queues/d/messages", json={"body": deep}), 422)
        very_deep = b'{"body": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        problem(
            client.post(
                "/v1/queues/d/messages",
                content=very_deep,
                headers={"content-type": "application/json"},
            ),
            422,
        )
        assert client.get("/v1/projections").json()["head"] == before + 1
