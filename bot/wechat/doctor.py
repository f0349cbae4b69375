"""`vipbot doctor`'s WeChat checks, each a `Finding` with the fix when it fails:

- **wechat access token**: cgi-bin/token answers a token for the AppID and AppSecret (40164: the server's IP,
  as WeChat names it, is not in the IP whitelist; 40001/40125: wrong AppSecret; 40013: wrong AppID).
- **wechat server URL**: `wechat.server_url` is set, http(s), and on port 80 or 443 (WeChat accepts no other).
- **wechat signature check**: a GET of that URL signed with `wechat.token`, as WeChat sends it when the URL is
  saved on the console, gets its `echostr` back.
- **wechat mode**: compatible and safe mode need a well-formed EncodingAESKey; then a POST encrypted with that key
  and the AppID, as WeChat encrypts, must be decrypted by the bot at the URL. The probe carries no message (the
  bot refuses it right after decrypting, 400 "<ToUserName> missing"), so it reaches no handler and changes
  nothing. What cannot be checked from here: the mode and key set on the WeChat console itself (no API reads
  them), the detail says so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import requests
import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import WeChatClientException

from bot.app.checks import Finding, Outcome
from bot.app.config import Settings, WeChatSettings
from bot.wechat.channel import signature_of
from bot.wechat.menu import BASIC_CONFIG, api_client, explain

TOKEN, URL, SIGNATURE, MODE = "wechat access token", "wechat server URL", "wechat signature check", "wechat mode"
TIMEOUT_SECONDS = 5.0
SERVER_CONFIG = f"{BASIC_CONFIG} → 服务器配置"


async def checks(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time
) -> list[Finding]:
    """The WeChat findings (one 'wechat' OK when the channel is off). `transport` carries the requests to the
    server URL (tests point it at a local server); `clock` dates the signed requests."""
    config = settings.wechat
    if not config.enabled:
        return [Finding.ok("wechat", "off (wechat.app_id and wechat.token are not both set): nothing to check")]
    findings = [await token_check(config), url_check(config)]
    reachable = findings[-1].outcome is not Outcome.FAIL and bool(config.server_url)
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
        if reachable:
            findings.append(await signature_check(config, http, clock))
            reachable = findings[-1].outcome is not Outcome.FAIL
        findings.append(await mode_check(config, http, clock, probe=reachable))
    return findings


async def token_check(config: WeChatSettings) -> Finding:
    """The access token, fetched as the bot fetches it (wechatpy, `wechat.api_base_url`), in a worker thread."""
    if not config.app_secret.get_secret_value():
        return Finding.fail(TOKEN, "no AppSecret configured: pushes, late answers and the menu cannot be sent",
                            f"set WECHAT_APP_SECRET (or wechat.app_secret) to the AppSecret from {BASIC_CONFIG}")
    client = api_client(config, timeout=TIMEOUT_SECONDS)
    where = f"{config.api_base_url.rstrip('/')}/token"
    try:
        await asyncio.to_thread(client.fetch_access_token)
    except WeChatClientException as exc:
        if exc.errcode is None:
            status = exc.response.status_code if exc.response is not None else "?"
            return Finding.fail(TOKEN, f"{where} answered HTTP {status}", "check wechat.api_base_url")
        return Finding.fail(TOKEN, f"WeChat refused the token: errcode {exc.errcode} ({exc.errmsg})",
                            explain(exc.errcode, str(exc.errmsg)))  # fmt: skip
    except requests.RequestException as exc:
        return Finding.fail(TOKEN, f"cannot reach {where} ({type(exc).__name__})",
                            "check the server's outgoing network (and wechat.api_base_url)")  # fmt: skip
    except ValueError:
        return Finding.fail(TOKEN, f"{where} did not answer as WeChat's API does", "check wechat.api_base_url")
    return Finding.ok(TOKEN, f"fetched for AppID {config.app_id} (this server's IP is whitelisted)")


def url_check(config: WeChatSettings) -> Finding:
    """The form of `wechat.server_url`: WeChat accepts http on port 80 and https on port 443 only."""
    url = config.server_url
    if not url:
        return Finding.warn(URL, "wechat.server_url is not set: the signature check and the mode cannot be tried",
                            f"set wechat.server_url to the URL entered in {SERVER_CONFIG} (服务器地址), e.g. "
                            "https://shop.example/wechat")  # fmt: skip
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return Finding.fail(URL, f"{url} is not a URL", "use the form https://shop.example/wechat")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Finding.fail(URL, f"{url} is not an http(s) URL", "use the form https://shop.example/wechat")
    standard = 443 if parts.scheme == "https" else 80
    if port is not None and port != standard:
        return Finding.fail(URL, f"{url} uses port {port}; WeChat accepts only {parts.scheme} on port {standard}",
                            f"serve the bot behind a reverse proxy on port {standard} (see the README) and drop "
                            f":{port} from the URL")  # fmt: skip
    if parts.scheme == "http":
        return Finding.warn(URL, f"{url} is plain http: members' messages cross the internet readable",
                            "serve it over https with a valid certificate (see the reverse-proxy recipe)")
    return Finding.ok(URL, url)


async def signature_check(config: WeChatSettings, http: httpx.AsyncClient, clock: Callable[[], float]) -> Finding:
    """What WeChat does when the URL is saved on the console: a GET signed with the token, `echostr` echoed."""
    url, token = config.server_url, config.token.get_secret_value()
    timestamp, nonce, echostr = str(int(clock())), secrets.token_hex(8), str(secrets.randbelow(10**18))
    params = {"signature": signature_of(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
              "echostr": echostr}  # fmt: skip
    try:
        response = await http.get(url, params=params)
    except httpx.HTTPError as exc:
        return _unreachable(SIGNATURE, url, exc)
    if response.status_code == 200 and response.text == echostr:
        return Finding.ok(SIGNATURE, f"{url} echoed a GET signed with wechat.token, as WeChat's URL check expects")
    if response.status_code == 403:
        return Finding.fail(SIGNATURE, f"{url} refused a GET signed with this configuration's wechat.token (403): "
                            "the bot there runs with another token",
                            f"use one Token everywhere: {SERVER_CONFIG} (令牌), WECHAT_TOKEN or wechat.token of the "
                            "running bot and of this check; restart the bot after changing it")  # fmt: skip
    if response.is_redirect:
        return Finding.fail(SIGNATURE, f"{url} redirects to {response.headers.get('location', '?')}; WeChat does not "
                            "follow redirects", "enter the final URL (https, port 443) on the console and in "
                            "wechat.server_url")  # fmt: skip
    if response.status_code == 200:
        return Finding.fail(SIGNATURE, f"{url} answered 200 but not with the echostr: something other than the bot "
                            "answers there", "point the URL (or the reverse proxy) at the bot's /wechat")  # fmt: skip
    return Finding.fail(SIGNATURE, f"{url} answered HTTP {response.status_code} to WeChat's URL check",
                        "the reverse proxy must pass the URL's path to the bot's /wechat (http.port)")  # fmt: skip


async def mode_check(
    config: WeChatSettings, http: httpx.AsyncClient, clock: Callable[[], float], *, probe: bool
) -> Finding:
    """Compatible and safe mode: a valid key, and (`probe`) the bot at the URL decrypts what it encrypts."""
    console = "the console's 消息加解密方式 cannot be read through WeChat's API: check by eye that it says"
    if config.mode == "plain":
        return Finding.ok(MODE, f"plain (明文模式): the signature covers the URL, not the body; {console} 明文模式 "
                          "(安全模式 with wechat.mode: safe also signs and encrypts every message)")  # fmt: skip
    label = {"compatible": "兼容模式", "safe": "安全模式"}[config.mode]
    key = config.encoding_aes_key.get_secret_value()
    try:
        valid = len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        return Finding.fail(MODE, f"{config.mode} mode: wechat.encoding_aes_key is not an EncodingAESKey (43 "
                            "characters of A-Z, a-z, 0-9)", f"copy 消息加解密密钥 again from {SERVER_CONFIG} into "
                            "WECHAT_ENCODING_AES_KEY")  # fmt: skip
    if not probe:
        return Finding.ok(MODE, f"{config.mode} mode ({label}): the EncodingAESKey is well-formed; the running bot "
                          f"was not tried (no usable wechat.server_url); {console} {label}")  # fmt: skip
    return await _probe(config, http, clock, label, console)


async def _probe(
    config: WeChatSettings, http: httpx.AsyncClient, clock: Callable[[], float], label: str, console: str
) -> Finding:
    url, token = config.server_url, config.token.get_secret_value()
    crypto = WeChatCrypto(token, config.encoding_aes_key.get_secret_value(), config.app_id)
    timestamp, nonce = str(int(clock())), secrets.token_hex(8)
    # No message fields inside: the bot decrypts it, then refuses it before any handler sees it.
    sealed = xmltodict.parse(crypto.encrypt_message("<xml><VipbotDoctor>check</VipbotDoctor></xml>", nonce,
                                                    timestamp))["xml"]  # fmt: skip
    body = f"<xml><ToUserName><![CDATA[{config.app_id}]]></ToUserName><Encrypt><![CDATA[{sealed['Encrypt']}]]>" \
           "</Encrypt></xml>"  # fmt: skip
    params = {"signature": signature_of(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
              "encrypt_type": "aes", "msg_signature": sealed["MsgSignature"]}  # fmt: skip
    try:
        response = await http.post(url, params=params, content=body.encode())
    except httpx.HTTPError as exc:
        return _unreachable(MODE, url, exc)
    answer = response.text.strip()
    if response.status_code == 400 and answer.startswith("<ToUserName>"):
        return Finding.ok(MODE, f"{config.mode} mode ({label}): the bot at {url} decrypted a message encrypted with "
                          f"this EncodingAESKey and AppID; {console} {label} with the same key")  # fmt: skip
    if answer == "wrong encryption mode":
        return Finding.fail(MODE, f"the bot at {url} takes no encrypted messages: it runs in plain mode",
                            f"run it with wechat.mode: {config.mode} (this configuration) and restart it")
    if answer.startswith("malformed body"):
        return Finding.fail(MODE, f"the bot at {url} could not decrypt a message encrypted with this "
                            "EncodingAESKey: it runs with another key", "use one EncodingAESKey everywhere: "
                            f"{SERVER_CONFIG} (消息加解密密钥) and the running bot's; restart it")  # fmt: skip
    if answer.startswith("timestamp"):
        return Finding.fail(MODE, f"the bot at {url} refused the probe's time ({answer})",
                            "set the server's clock right (NTP): WeChat's signed times would be refused too")
    if response.status_code == 403:
        return Finding.fail(MODE, f"the bot at {url} refused a message signed and encrypted for AppID "
                            f"{config.app_id}: it runs with another AppID or token",
                            "use the same wechat.app_id and wechat.token as the running bot; restart it")
    return Finding.fail(MODE, f"{url} answered HTTP {response.status_code} to an encrypted message",
                        "point the URL at the bot's /wechat")  # fmt: skip


def _unreachable(name: str, url: str, exc: httpx.HTTPError) -> Finding:
    if "CERTIFICATE" in str(exc).upper():
        return Finding.fail(name, f"{url}: the TLS certificate is not valid ({exc})",
                            "WeChat requires a valid certificate from a public CA (not self-signed, not expired)")
    return Finding.fail(name, f"cannot reach {url} ({type(exc).__name__})",
                        "start the bot (vipbot run) and make the URL reach it from the internet (DNS, firewall, "
                        "the reverse proxy to http.port)")  # fmt: skip
