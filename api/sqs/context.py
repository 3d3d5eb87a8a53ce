"""Who is calling the SQS door and where it is: the principal (with auth on, from an AWS SigV4
signature made with a key of ``--sqs-credentials``), the queue URLs and ARNs to answer with.

Signatures are checked with botocore's own signer, which computes the signature the request
should carry from its method, path, signed headers and body; Cairn does not re-implement the
algorithm. With auth off, signatures are not checked (as the local SQS emulators do).
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Final

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.requests import Request

from api.auth import ANONYMOUS, Action, Principal
from api.services import Services
from api.sqs.errors import SqsError

DEFAULT_REGION: Final = "us-east-1"
MAX_SKEW: Final = timedelta(minutes=5)
_AUTHORIZATION: Final = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/"
    r"(?P<service>[^/\s]+)/aws4_request,\s*SignedHeaders=(?P<headers>[a-z0-9;\-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass(frozen=True)
class Key:
    secret: str
    sub: str
    scope: str


@cache
def load_credentials(path: str) -> dict[str, Key]:
    """``--sqs-credentials``: ``{"<access key id>": {"secret", "sub", "scope"}}``. Read once
    per process (the file was checked when the server started)."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        key_id: Key(v["secret"], v["sub"], v.get("scope", "")) for key_id, v in document.items()
    }


@dataclass(frozen=True)
class Call:
    request: Request
    s: Services
    principal: Principal
    base_url: str
    """``http://<the request's Host>/<account id>``: queue URLs are this plus the name."""
    account_id: str
    region: str

    @classmethod
    def of(cls, request: Request, s: Services, body: bytes) -> Call:
        settings = s.settings
        region = DEFAULT_REGION
        principal = ANONYMOUS
        if settings.auth:
            principal, region = _signed(request, body, settings.sqs_credentials)
        else:
            found = _AUTHORIZATION.match(request.headers.get("authorization", ""))
            if found is not None:
                region = found["region"]
        host = request.headers.get("host", f"{settings.host}:{settings.port}")
        base = f"{request.url.scheme}://{host}/{settings.sqs_account_id}"
        return cls(request, s, principal, base, settings.sqs_account_id, region)

    def url_of(self, queue: str) -> str:
        return f"{self.base_url}/{queue}"

    def arn_of(self, queue: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{queue}"

    def require(self, action: Action, queue: str | None) -> None:
        """The key's scope must allow ``action``, as a token's scope would."""
        if not self.principal.may(action, queue):
            raise SqsError(
                "AccessDenied",
                f"Access to the resource {queue or 'this endpoint'} is denied: the key's scope"
                f" does not allow {action}.",
            )


def _signed(request: Request, body: bytes, credentials_file: str | None) -> tuple[Principal, str]:
    """The principal whose key signed the request, and the region it was signed for."""
    found = _AUTHORIZATION.match(request.headers.get("authorization", ""))
    if credentials_file is None or found is None:
        raise SqsError(
            "InvalidClientTokenId",
            "The security token included in the request is invalid: requests must be signed"
            " (AWS Signature Version 4) with a key of --sqs-credentials.",
        )
    key = load_credentials(credentials_file).get(found["key"])
    if key is None:
        raise SqsError(
            "InvalidClientTokenId", "The security token included in the request is invalid."
        )
    stamp = request.headers.get("x-amz-date", "")
    try:
        at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SqsError("SignatureDoesNotMatch", "X-Amz-Date is missing or invalid.") from None
    if abs(datetime.now(UTC) - at) > MAX_SKEW or stamp[:8] != found["date"]:
        raise SqsError(
            "SignatureDoesNotMatch",
            "Signature expired: the request's X-Amz-Date is more than 5 minutes from now.",
        )
    signed = found["headers"].split(";")
    missing = [h for h in signed if h not in request.headers]
    if "host" not in signed or missing:
        raise SqsError("SignatureDoesNotMatch", "The request's signed headers are incomplete.")
    expected = _signature(request, body, signed, found["region"], found["service"], key, stamp)
    if not hmac.compare_digest(expected, found["signature"]):
        raise SqsError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    return Principal.from_scope(key.sub, key.scope, None), found["region"]


def _signature(
    request: Request,
    body: bytes,
    signed: list[str],
    region: str,
    service: str,
    key: Key,
    stamp: str,
) -> str:
    url = f"{request.url.scheme}://{request.headers['host']}{request.url.path}"
    if request.url.query:
        url += f"?{request.url.query}"
    aws = AWSRequest(
        method=request.method, url=url, data=body, headers={h: request.headers[h] for h in signed}
    )
    aws.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials("-", key.secret), service, region)
    canonical = signer.canonical_request(aws)
    signature: str = signer.signature(signer.string_to_sign(aws, canonical), aws)
    return signature
