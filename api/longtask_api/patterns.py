"""The rules for names, labels, label selectors and event ids, as the regular expressions
the gateway's OpenAPI declares and FastAPI enforces; pure data, no I/O here.

One expression serves both, so the document and the gateway cannot disagree. Each accepts
nothing Kubernetes would refuse: input that passes here is never turned away by the
apiserver for its form. Where Kubernetes' rule cannot be written as a plain expression (a
label key's prefix: a DNS subdomain of at most 253 characters), the expression is a little
stricter, and says how. No lookaround, so that Python, Rust (pydantic-core), ECMA-262
(OpenAPI clients) and test-data generators all read it the same way.
"""

from __future__ import annotations


def _anchored(expression: str) -> str:
    return f"^{expression}$"


_ALNUM = "[a-z0-9]"
# One part of a DNS name: lowercase letters, digits and '-', starting and ending alphanumeric.
_DNS_PART = rf"{_ALNUM}(?:[-a-z0-9]*{_ALNUM})?"
# A label key's prefix: a DNS subdomain; at most 6 parts of at most 41 characters
# (6 x 41 + 5 dots = 251) keeps it under Kubernetes' 253 (topology.ebs.csi.aws.com fits).
_PREFIX_PART = rf"{_ALNUM}(?:[-a-z0-9]{{0,39}}{_ALNUM})?"
_PREFIX = rf"{_PREFIX_PART}(?:\.{_PREFIX_PART}){{0,5}}"
# A label key's name, and a label value: at most 63 characters, alphanumeric at both ends.
_NAME = "[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = rf"(?:{_PREFIX}/)?{_NAME}"

# A namespace (DNS-1123 label); the 63-character limit is the parameter's maxLength.
NAMESPACE = _anchored(_DNS_PART)
# An object's name (DNS-1123 subdomain): dot-separated DNS parts; the parameter's maxLength
# (253) is Kubernetes' limit.
OBJECT_NAME = _anchored(rf"{_DNS_PART}(?:\.{_DNS_PART})*")
# A label key: [prefix/]name.
LABEL_KEY = _anchored(_KEY)
# A label value: empty, or a name.
LABEL_VALUE = _anchored(f"(?:{_NAME})?")

# A label selector as kube-apiserver parses it: comma-separated requirements, each
# `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)` or
# `key notin (v1,v2)`, spaces allowed around the operators ("" or spaces: every object).
# Kubernetes' `key>1`/`key<1` (and tabs or newlines as spaces) are not accepted here.
_SP = " *"
_EQUALITY = rf"{_KEY}{_SP}(?:==?|!=){_SP}(?:{_NAME})?"
_SET = rf"{_KEY} +(?:in|notin){_SP}\({_SP}{_NAME}(?:{_SP},{_SP}{_NAME})*{_SP}\)"
_REQUIREMENT = rf"{_SP}(?:!{_SP}{_KEY}|{_SET}|{_EQUALITY}|{_KEY}){_SP}"
LABEL_SELECTOR = _anchored(rf"(?:{_REQUIREMENT}(?:,{_REQUIREMENT})*|{_SP})")

# A Redis stream id (an SSE event id of the gateway's streams): milliseconds[-sequence];
# empty means none (from the start).
STREAM_ID = _anchored(r"(?:[0-9]+(?:-[0-9]+)?)?")
