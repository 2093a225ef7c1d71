"""A small TwiML writer: the verbs our views use, written straight into a string.

The views were first built with twilio's ``VoiceResponse`` helper, which makes an object per verb
and serialises them through ElementTree: about 1 ms for an answer of 80 verbs, most of the
answer webhook's time. This writer produces the same bytes (attributes sorted, ElementTree's
escaping, its ``<Verb />`` empty form for a verb with no text, ``true``/``false`` for booleans;
``tests/server/calls/test_twiml.py`` checks it against the helper) in a few hundredths of that.
It knows only the verbs and attributes below, all of which Twilio accepts where the views put
them.

Like the helper, it writes what it is given: characters XML 1.0 forbids (controls, lone
surrogates) are the caller's to remove (``server.calls.twiml`` cleans every text, URL and
attribute).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

__all__ = ["XML_DECLARATION", "Element", "Response", "attr", "text"]

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def text(value: str) -> str:
    """Character data escaped as ElementTree does."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    return value


def attr(value: str) -> str:
    """An attribute value escaped as ElementTree does."""
    value = text(value)
    if '"' in value:
        value = value.replace('"', "&quot;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    if "\n" in value:
        value = value.replace("\n", "&#10;")
    if "\t" in value:
        value = value.replace("\t", "&#09;")
    return value


Value = str | int | bool | None  # None: the attribute is left out


def _value(value: str | int | bool) -> str:
    """An attribute value as the helper writes it: ``str()``, but booleans in lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _tag(name: str, attrs: Mapping[str, Value]) -> str:
    """``<Name a="1" b="2"`` (not closed), attributes sorted by name as the helper does."""
    items = "".join(f' {k}="{attr(_value(v))}"' for k, v in sorted(attrs.items()) if v is not None)
    return f"<{name}{items}"


@functools.lru_cache(maxsize=64)
def _say_tag(language: str | None, voice: str | None) -> str:
    # A document has one or two voices; its ~20 <Say>s share the tag.
    return _tag("Say", {"language": language, "voice": voice})


class Element:
    """A verb that holds others (``<Response>``, ``<Gather>``); children are written in order."""

    def __init__(self, name: str, attrs: Mapping[str, Value] | None = None) -> None:
        self._open = _tag(name, attrs or {})
        self._close = f"</{name}>"
        self._children: list[str | Element] = []

    def play(self, url: str | None = None, *, digits: str | None = None) -> None:
        tag = "<Play" if digits is None else _tag("Play", {"digits": digits})
        self._children.append(f"{tag}>{text(url)}</Play>" if url else f"{tag} />")

    def say(self, words: str, *, voice: str | None = None, language: str | None = None) -> None:
        tag = _say_tag(language, voice)
        self._children.append(f"{tag}>{text(words)}</Say>" if words else f"{tag} />")

    def pause(self, *, length: int) -> None:
        self._children.append(f'<Pause length="{length}" />')

    def hangup(self) -> None:
        self._children.append("<Hangup />")

    def redirect(self, url: str, *, method: str = "POST") -> None:
        tag = _tag("Redirect", {"method": method})
        self._children.append(f"{tag}>{text(url)}</Redirect>" if url else f"{tag} />")

    def gather(self, attrs: Mapping[str, Value]) -> Element:
        """A nested ``<Gather>``; ``attrs`` are TwiML's own names (``numDigits``)."""
        child = Element("Gather", attrs)
        self._children.append(child)
        return child

    def write(self, out: list[str]) -> None:
        if not self._children:
            out.append(f"{self._open} />")
            return
        out.append(f"{self._open}>")
        for child in self._children:
            if isinstance(child, str):
                out.append(child)
            else:
                child.write(out)
        out.append(self._close)


class Response(Element):
    """The document: ``str(Response())`` starts exactly with the XML declaration."""

    def __init__(self) -> None:
        super().__init__("Response")

    def __str__(self) -> str:
        out = [XML_DECLARATION]
        self.write(out)
        return "".join(out)
