"""SQS's query protocol (``Action=SendMessage&Version=2012-11-05&...`` answered in XML), as the
SDKs released before mid-2024 speak it: a decoder from its form parameters into the same
parameters the JSON 1.0 protocol carries, and an encoder of the actions' answers (and errors)
into SQS's XML. The actions themselves are the JSON protocol's: one implementation, two doors.

The names come from SQS's query model (botocore up to 1.34.89, ``protocol: query``): lists and
maps are *flattened*, each element named by its ``locationName`` and numbered from 1
(``AttributeName.1``, ``Attribute.1.Name``/``Attribute.1.Value``, ``MessageAttribute.1.Value.
DataType``, ``SendMessageBatchRequestEntry.1.Id``...); an empty list is its own name with an
empty value (``AttributeNames=``); blobs are base64, as in JSON; numbers are decimal text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final
from xml.sax.saxutils import escape

from api.sqs.errors import SqsError

NAMESPACE: Final = "http://queue.amazonaws.com/doc/2012-11-05/"
CONTENT_TYPE: Final = "text/xml"

Params = dict[str, Any]


# -- decoding ---------------------------------------------------------------------------------

_LIST: Final = "list"
_MAP: Final = "map"
_STRUCTS: Final = "structs"
_FIELDS: Final[dict[str, tuple[str, str, tuple[str, str]]]] = {
    # the query name of a list or map: (the JSON member, its kind, a map's key and value names)
    "Attribute": ("Attributes", _MAP, ("Name", "Value")),
    "Tag": ("tags", _MAP, ("Key", "Value")),
    "MessageAttribute": ("MessageAttributes", _MAP, ("Name", "Value")),
    "MessageSystemAttribute": ("MessageSystemAttributes", _MAP, ("Name", "Value")),
    "AttributeName": ("AttributeNames", _LIST, ("", "")),
    "MessageAttributeName": ("MessageAttributeNames", _LIST, ("", "")),
    "MessageSystemAttributeName": ("MessageSystemAttributeNames", _LIST, ("", "")),
    "TagKey": ("TagKeys", _LIST, ("", "")),
    "AWSAccountId": ("AWSAccountIds", _LIST, ("", "")),
    "ActionName": ("Actions", _LIST, ("", "")),
    "StringListValue": ("StringListValues", _LIST, ("", "")),
    "BinaryListValue": ("BinaryListValues", _LIST, ("", "")),
    "SendMessageBatchRequestEntry": ("Entries", _STRUCTS, ("", "")),
    "DeleteMessageBatchRequestEntry": ("Entries", _STRUCTS, ("", "")),
    "ChangeMessageVisibilityBatchRequestEntry": ("Entries", _STRUCTS, ("", "")),
}
_JSON_NAMES: Final = {json: kind for json, kind, _ in _FIELDS.values()}
_RENAMED: Final[dict[str, dict[str, str]]] = {
    # TagQueue's ``Tags`` goes as ``Tag.N`` (the map's own locationName), as CreateQueue's ``tags``
    "TagQueue": {"tags": "Tags"},
}
_INTEGERS: Final = frozenset(
    {
        "DelaySeconds",
        "MaxNumberOfMessages",
        "VisibilityTimeout",
        "WaitTimeSeconds",
        "MaxResults",
        "MaxNumberOfMessagesPerSecond",
    }
)
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")
_INDEX: Final = re.compile(r"[1-9][0-9]{0,5}")

Tree = dict[str, Any]


def decode(action: str, pairs: Iterable[tuple[str, str]]) -> Params:
    """The JSON protocol's parameters of ``action`` from its form parameters (``Action`` and
    ``Version`` left out)."""
    tree: Tree = {}
    for key, value in pairs:
        if key in ("Action", "Version"):
            continue
        node = tree
        *path, last = key.split(".")
        for part in path:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise _malformed(key)
            node = child
        if isinstance(node.get(last), dict):
            raise _malformed(key)
        node[last] = value
    params = _struct(tree)
    for query, json in _RENAMED.get(action, {}).items():
        if query in params:
            params[json] = params.pop(query)
    return params


def _malformed(key: str) -> SqsError:
    return SqsError("MalformedQueryString", f"The query parameter {key} is malformed.")


def _struct(tree: Tree) -> Params:
    params: Params = {}
    for name, node in tree.items():
        if name in _FIELDS:
            json, kind, (key, value) = _FIELDS[name]
            params[json] = _collection(name, node, kind, key, value)
        elif name in _JSON_NAMES and node == "":
            params[name] = {} if _JSON_NAMES[name] == _MAP else []  # an empty list or map
        elif isinstance(node, dict):
            params[name] = _struct(node)
        elif name in _INTEGERS and _INTEGER.fullmatch(node):
            params[name] = int(node)
        else:
            params[name] = node  # a string (an integer that is not one: the action says so)
    return params


def _collection(name: str, node: Any, kind: str, key: str, value: str) -> Any:
    if not isinstance(node, dict) or not all(_INDEX.fullmatch(i) for i in node):
        raise _malformed(name)
    elements = [node[i] for i in sorted(node, key=int)]
    if kind == _LIST:
        if not all(isinstance(e, str) for e in elements):
            raise _malformed(name)
        return elements
    if kind == _STRUCTS:
        if not all(isinstance(e, dict) for e in elements):
            raise _malformed(name)
        return [_struct(e) for e in elements]
    mapped: Params = {}
    for element in elements:
        if not isinstance(element, dict) or not isinstance(element.get(key), str):
            raise _malformed(f"{name}.N.{key}")
        entry = element.get(value)
        mapped[element[key]] = _struct(entry) if isinstance(entry, dict) else entry
    return mapped


# -- encoding ---------------------------------------------------------------------------------

_ELEMENTS: Final[dict[str, str]] = {
    # a flattened list in an answer: each element's name
    "QueueUrls": "QueueUrl",
    "queueUrls": "QueueUrl",
    "Messages": "Message",
    "Failed": "BatchResultErrorEntry",
    "Results": "ListMessageMoveTasksResultEntry",
}
_SUCCESSFUL: Final[dict[str, str]] = {
    "SendMessageBatch": "SendMessageBatchResultEntry",
    "DeleteMessageBatch": "DeleteMessageBatchResultEntry",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibilityBatchResultEntry",
}
_MAPS: Final[dict[str, tuple[str, str, str]]] = {
    # a flattened map in an answer: (each entry's name, its key's, its value's)
    "Attributes": ("Attribute", "Name", "Value"),
    "Tags": ("Tag", "Key", "Value"),
    "MessageAttributes": ("MessageAttribute", "Name", "Value"),
}


def encode(action: str, result: Params, request_id: str) -> bytes:
    """``<ActionResponse><ActionResult>...</ActionResult><ResponseMetadata>...``."""
    parts = [f'<?xml version="1.0"?><{action}Response xmlns="{NAMESPACE}">']
    if result:
        parts.append(f"<{action}Result>")
        _members(parts, action, result)
        parts.append(f"</{action}Result>")
    else:
        parts.append(f"<{action}Result/>")
    parts.append(
        f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return "".join(parts).encode()


def _members(parts: list[str], action: str, members: Params) -> None:
    for name, value in members.items():
        if value is None:
            continue
        if isinstance(value, list):
            element = _SUCCESSFUL[action] if name == "Successful" else _ELEMENTS[name]
            for item in value:
                _element(parts, action, element, item)
        elif isinstance(value, dict) and name in _MAPS:
            entry, key, inner = _MAPS[name]
            for k, v in value.items():
                parts.append(f"<{entry}><{key}>{escape(k)}</{key}>")
                _element(parts, action, inner, v)
                parts.append(f"</{entry}>")
        else:
            _element(parts, action, name, value)


def _element(parts: list[str], action: str, name: str, value: Any) -> None:
    if isinstance(value, dict):
        parts.append(f"<{name}>")
        _members(parts, action, value)
        parts.append(f"</{name}>")
    elif isinstance(value, bool):
        parts.append(f"<{name}>{'true' if value else 'false'}</{name}>")
    else:
        parts.append(f"<{name}>{_text(str(value))}</{name}>")


def _text(text: str) -> str:
    # A carriage return would come back as a line feed from an XML parser: SQS sends it as a
    # character reference, so that a body's MD5 still matches.
    return escape(text).replace("\r", "&#xD;")


def error(error: SqsError, request_id: str) -> bytes:
    fault = "Sender" if error.sender_fault else "Receiver"
    return (
        f'<?xml version="1.0"?><ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{fault}</Type>'
        f"<Code>{escape(error.code)}</Code><Message>{_text(error.message)}</Message>"
        f"<Detail/></Error><RequestId>{escape(request_id)}</RequestId></ErrorResponse>"
    ).encode()
