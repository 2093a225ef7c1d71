"""Webhook signatures: checked with twilio's RequestValidator against the public URL."""

from __future__ import annotations

import pytest
from multidict import MultiDict, MultiDictProxy

from server.calls.signature import expected_url, is_valid, sign

TOKEN = "12345678901234567890123456789012"
PUBLIC = "https://abc.ngrok.app"
PATH = "/twilio/gather/42?state=menu&tries=1"
URL = PUBLIC + PATH
PARAMS = {"CallSid": "CA123", "Digits": "1", "AnsweredBy": "human", "From": "+15551234567"}


def test_valid():
    assert is_valid(TOKEN, URL, PARAMS, sign(TOKEN, URL, PARAMS))


def test_known_vector():
    # Twilio's published example (its SDKs' RequestValidator tests), independent of sign().
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert is_valid("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not is_valid("12345", url + "&extra=1", params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


@pytest.mark.parametrize(
    ("token", "url", "params"),
    [
        ("wrong-token-0000000000000000000", URL, PARAMS),
        # Replayed to another URL: other path, other query, other state.
        (TOKEN, PUBLIC + "/twilio/gather/43?state=menu&tries=1", PARAMS),
        (TOKEN, PUBLIC + "/twilio/gather/42?state=menu&tries=2", PARAMS),
        (TOKEN, PUBLIC + "/twilio/gather/42", PARAMS),
        (TOKEN, "https://evil.example" + PATH, PARAMS),
        # Tampered or missing parameters.
        (TOKEN, URL, {**PARAMS, "Digits": "5"}),
        (TOKEN, URL, {k: v for k, v in PARAMS.items() if k != "From"}),
        (TOKEN, URL, {**PARAMS, "Extra": ""}),
    ],
)
def test_invalid(token, url, params):
    assert not is_valid(token, url, params, sign(TOKEN, URL, PARAMS))


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature(signature):
    assert not is_valid(TOKEN, URL, PARAMS, signature)


def test_empty_token_never_validates():
    assert not is_valid("", URL, PARAMS, sign("", URL, PARAMS))


def test_garbage_signature_or_url_is_invalid_not_an_error():
    assert not is_valid(TOKEN, URL, PARAMS, "not base64 at all")
    assert not is_valid(TOKEN, "https://host:notaport/x", PARAMS, "abc=")
    assert not is_valid(TOKEN, URL, {"Digits": 1}, "abc=")  # type: ignore[dict-item]


def test_behind_a_proxy_only_the_public_url_validates():
    # Twilio signed the public URL; the app, behind TLS termination, sees http and its own host.
    signature = sign(TOKEN, URL, PARAMS)
    seen_by_app = "http://127.0.0.1:8080" + PATH
    assert not is_valid(TOKEN, seen_by_app, PARAMS, signature)
    assert is_valid(TOKEN, expected_url(PUBLIC, PATH), PARAMS, signature)


@pytest.mark.parametrize(
    ("signed", "public"),
    [
        # The validator accepts the default port written or omitted, either way round.
        ("https://abc.ngrok.app" + PATH, "https://abc.ngrok.app:443"),
        ("https://abc.ngrok.app:443" + PATH, "https://abc.ngrok.app"),
        ("http://abc.example" + PATH, "http://abc.example:80"),
        ("https://abc.example:8443" + PATH, "https://abc.example:8443"),
    ],
)
def test_default_port(signed, public):
    assert is_valid(TOKEN, expected_url(public, PATH), PARAMS, sign(TOKEN, signed, PARAMS))


def test_non_default_port_must_match():
    signature = sign(TOKEN, "https://abc.example:8443" + PATH, PARAMS)
    assert not is_valid(TOKEN, expected_url("https://abc.example", PATH), PARAMS, signature)


@pytest.mark.parametrize(
    ("public", "path_qs", "url"),
    [
        ("https://abc.ngrok.app", "/twilio/voice/1", "https://abc.ngrok.app/twilio/voice/1"),
        ("https://abc.ngrok.app/", "/twilio/voice/1", "https://abc.ngrok.app/twilio/voice/1"),
        ("https://abc.ngrok.app", "twilio/voice/1", "https://abc.ngrok.app/twilio/voice/1"),
        # The query stays exactly as received, encoding and order included.
        ("https://h.example", "/t?b=2&a=%2B1%20x", "https://h.example/t?b=2&a=%2B1%20x"),
        # A prefix the proxy strips is put back ...
        ("https://h.example/vp", "/twilio/voice/1?x=1", "https://h.example/vp/twilio/voice/1?x=1"),
        ("https://h.example/vp/", "/twilio/voice/1", "https://h.example/vp/twilio/voice/1"),
        # ... and one the app already sees is not doubled.
        ("https://h.example/vp", "/vp/twilio/voice/1", "https://h.example/vp/twilio/voice/1"),
        ("https://h.example/vp", "/vpx/twilio", "https://h.example/vp/vpx/twilio"),
    ],
)
def test_expected_url(public, path_qs, url):
    assert expected_url(public, path_qs) == url


@pytest.mark.parametrize(
    "public", ["abc.ngrok.app", "ftp://h.example", "https://", "https://h/?q=1"]
)
def test_expected_url_rejects_bad_public_url(public):
    with pytest.raises(ValueError):
        expected_url(public, "/x")


def test_multi_valued_params():
    # aiohttp's request.post() is a MultiDictProxy; every value of a repeated name is signed.
    form = MultiDictProxy(MultiDict([("CallSid", "CA1"), ("Tag", "a"), ("Tag", "b")]))
    signature = sign(TOKEN, URL, form)
    assert is_valid(TOKEN, URL, form, signature)
    assert is_valid(TOKEN, URL, {"CallSid": ["CA1"], "Tag": ["b", "a"]}, signature)
    assert not is_valid(TOKEN, URL, {"CallSid": "CA1", "Tag": "a"}, signature)


def test_get_webhook_signs_the_url_only():
    url = PUBLIC + "/twilio/status?CallSid=CA1&CallStatus=completed"
    assert is_valid(TOKEN, url, {}, sign(TOKEN, url, {}))


def test_sha256_algorithm():
    signature = sign(TOKEN, URL, PARAMS, algorithm="HMAC_SHA256")
    assert is_valid(TOKEN, URL, PARAMS, signature, algorithm="HMAC_SHA256")
    assert not is_valid(TOKEN, URL, PARAMS, signature)
    assert not is_valid(TOKEN, URL, PARAMS, signature, algorithm="HMAC_MD5")
