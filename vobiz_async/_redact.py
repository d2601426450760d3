"""
Keeping the auth token out of everything we build: messages, logs, errors' responses.

Servers and proxies echo requests back in bodies, headers and even broken
status lines, raw or encoded. Every text we build from an answer goes through
``Redactor`` before it is cut short, so no piece of the token survives a cut.
"""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "Redactor", "shorten"]

MASK = "***"


class Redactor:
    """
    Replaces secrets (the auth token, a proxy's password) in their raw and common encoded forms.

    The forms: as is, URL-encoded (``quote`` and ``quote_plus``, with and
    without ``/`` kept, either hex case), JSON-escaped, HTML-escaped, and
    base64 at each of its three alignments.
    """

    def __init__(self, secret: str, *more: str) -> None:
        forms: set[str] = set()
        for each in (secret, *more):
            forms |= _forms(each)
        # Longest first, so that a form containing another is replaced whole.
        self._forms = sorted((form for form in forms if form), key=len, reverse=True)
        self._forms_bytes = [form.encode() for form in self._forms]
        #: The longest form: how much of a cut text's end could hold part of the secret.
        self.longest = len(self._forms[0])

    def __repr__(self) -> str:
        return "<Redactor>"

    def __call__(self, text: str) -> str:
        """
        ``text`` with every form of the secret replaced by ``***``.
        """
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def bytes(self, data: bytes) -> bytes:
        """
        Like calling it, for bytes.
        """
        for form in self._forms_bytes:
            if form in data:
                data = data.replace(form, MASK.encode())
        return data

    def shows_secret(self, text: str) -> bool:
        """
        True if ``text`` holds the secret in any form this redactor knows.
        """
        return self(text) != text


def _forms(secret: str) -> set[str]:
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),  # "/" left as is, as most URL builders do
        quote_plus(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        html.escape(secret),
    }
    forms |= {form.lower() for form in forms if "%" in form}
    # Base64 of a text holding the secret depends on where in it the secret
    # starts (mod 3): the middle of each of the three encodings is fixed. So
    # this also masks it inside a Basic credential's "user:password".
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret.encode()).decode()
        forms.add(encoded[4:-4] if len(encoded) > 12 else encoded)
    return forms


def shorten(text: str, limit: int = 120) -> str:
    """
    Whitespace folded, cut to ``limit`` characters with ``...``. Redact before, never after.
    """
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
