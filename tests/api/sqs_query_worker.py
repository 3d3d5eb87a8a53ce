"""An SQS client that speaks the query protocol, for tests: run with the python of the venv
that scripts/test makes (``.venv-sqs-query``: boto3/botocore 1.34.89, the last whose SQS model
says ``protocol: query``), it reads one call a line on stdin (``[operation, params]`` as JSON)
and writes its outcome a line on stdout (``{"ok": result}``, ``{"error": response, "shape":
<the exception's class>}``, or ``{"failure": ...}`` for a call botocore refused to send).

Bytes travel as ``{"__bytes__": "<base64>"}`` both ways. This file imports only what that venv
holds (boto3), never Cairn.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    return str(value)  # datetimes in response metadata


def _decode(value: dict[str, Any]) -> Any:
    if set(value) == {"__bytes__"}:
        return base64.b64decode(value["__bytes__"])
    return value


def main() -> None:
    import boto3
    import botocore.exceptions

    url, key, secret = sys.argv[1:4]
    client = boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )
    protocol = client.meta.service_model.protocol
    print(json.dumps({"protocol": protocol, "botocore": botocore.__version__}), flush=True)
    for line in sys.stdin:
        operation, params = json.loads(line, object_hook=_decode)
        try:
            result = getattr(client, operation)(**params)
        except botocore.exceptions.ClientError as error:
            # The exception's class is the error's shape, which botocore found by its code.
            outcome: dict[str, Any] = {"error": error.response, "shape": type(error).__name__}
        except botocore.exceptions.BotoCoreError as error:  # refused before it was sent
            outcome = {"failure": f"{type(error).__name__}: {error}"}
        else:
            result.pop("ResponseMetadata", None)
            outcome = {"ok": result}
        print(json.dumps(outcome, default=_encode), flush=True)


if __name__ == "__main__":
    main()
