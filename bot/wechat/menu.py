"""`vipbot wechat menu`: pushes the custom menu (自定义菜单) built from `wechat.menu` and `wechat.menu_layout` to
WeChat (menu/create), so nobody has to build it by hand. Every button is a `click` button whose key is a
`wechat.menu` key: a member's tap arrives as a CLICK event and stands for that key's text (see channel.py).

The layout is validated when the configuration is loaded (3 buttons, 5 sub-buttons each, name lengths); what
WeChat still refuses (the server's IP not whitelisted, a wrong AppSecret, an account without the menu API right)
is one line with the errcode and what to do, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TYPE_CHECKING, Any

from bot.app.config import Settings, WeChatSettings

if TYPE_CHECKING:  # wechatpy and requests are imported when the menu is pushed: `vipbot` itself starts fast
    from bot.wechat.client import ShopWeChatClient

API_TIMEOUT_SECONDS = 10.0

WHITELIST = "公众号后台 → 设置与开发 → 基本配置 → IP白名单"
BASIC_CONFIG = "公众号后台 → 设置与开发 → 基本配置"
_IP = re.compile(r"invalid ip ([0-9A-Fa-f.:]+)")


def api_client(config: WeChatSettings, timeout: float = API_TIMEOUT_SECONDS) -> ShopWeChatClient:
    """The bot's own WeChat client (the configured `api_base_url`, the same access-token handling), with every
    request, the token's included, bounded by `timeout`."""
    from bot.wechat.client import ShopWeChatClient

    return ShopWeChatClient(config.app_id, config.app_secret.get_secret_value(), config.api_base_url, timeout)


def whitelist_ip(errmsg: str) -> str:
    """The caller's IP as WeChat names it in a 40164 errmsg ('invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in
    whitelist rid: …'), '' when it names none."""
    found = _IP.search(errmsg or "")
    return found.group(1) if found else ""


def explain(errcode: int | None, errmsg: str) -> str:
    """What an errcode from the token or menu API means for the shop owner, and what to do."""
    if errcode == 40164:
        ip = whitelist_ip(errmsg)
        return (f"this server's IP {ip or '(see the errmsg)'} is not in the IP whitelist: add it in {WHITELIST}, "
                "then run this again")  # fmt: skip
    if errcode in (40001, 40125):
        return (f"wrong AppSecret: copy the AppSecret (开发者密码) from {BASIC_CONFIG} (reset it if nobody kept it) "
                "into WECHAT_APP_SECRET or wechat.app_secret")  # fmt: skip
    if errcode == 40013:
        return f"wrong AppID: copy the AppID (开发者ID) from {BASIC_CONFIG} into wechat.app_id"
    if errcode == 48001:
        return ("this account has no right to the menu API (unverified subscription accounts have none): verify the "
                "account (微信认证) or use a service account; until then members type the keywords (签到, 积分, …)")
    if errcode in (-1, 45009):
        return "WeChat is busy or the daily API quota is used up: try again later"
    if errcode in (40016, 40017, 40018, 40019, 40022, 40023, 40024, 40025, 40026, 40033):
        return "WeChat refused the menu's shape: check wechat.menu and wechat.menu_layout"
    return f"WeChat refused the call: {errmsg}"


def click(key: str, name: str) -> dict[str, str]:
    return {"type": "click", "name": name, "key": key}


def menu_json(config: WeChatSettings) -> dict[str, Any]:
    """The menu/create body, in WeChat's documented shape:
    ``{"button": [{"type": "click", "name": "签到", "key": "CHECKIN"}, {"name": "更多", "sub_button": [...]}]}``."""
    buttons: list[dict[str, Any]] = []
    for entry in config.menu_tree():
        if isinstance(entry, str):
            buttons.append(click(entry, config.menu[entry]))
        else:
            buttons.append({"name": entry.name, "sub_button": [click(key, config.menu[key]) for key in entry.keys]})
    return {"button": buttons}


def summary(menu: dict[str, Any]) -> str:
    """'签到, 积分, 更多: 我的 / 活动 / …' — what the members will see."""
    parts = []
    for button in menu["button"]:
        subs = button.get("sub_button")
        parts.append(f"{button['name']} ({' / '.join(s['name'] for s in subs)})" if subs else button["name"])
    return ", ".join(parts)


class MenuError(Exception):
    """The menu could not be pushed; the message is one line with the errcode (if any) and what to do."""


def push_menu(config: WeChatSettings, client: ShopWeChatClient | None = None) -> dict[str, Any]:
    """Create the menu on WeChat (replacing the one there) and return what was sent; MenuError otherwise.
    Synchronous (wechatpy): call it from a thread when an event loop runs."""
    import requests
    from wechatpy.exceptions import WeChatClientException

    menu = menu_json(config)
    if not menu["button"]:
        raise MenuError("wechat.menu is empty: there is nothing to push")
    if not config.app_id or not config.app_secret.get_secret_value():
        raise MenuError("wechat.app_id and the AppSecret (WECHAT_APP_SECRET or wechat.app_secret) are needed to "
                        f"push the menu; both are in {BASIC_CONFIG}")  # fmt: skip
    client = client or api_client(config)
    try:
        client.menu.create(menu)
    except WeChatClientException as exc:
        if exc.errcode is None:  # an HTTP error status, not a WeChat answer
            status = exc.response.status_code if exc.response is not None else "?"
            raise MenuError(f"{config.api_base_url} answered HTTP {status}: check wechat.api_base_url") from exc
        raise MenuError(f"errcode {exc.errcode} ({exc.errmsg}): {explain(exc.errcode, str(exc.errmsg))}") from exc
    except requests.RequestException as exc:
        raise MenuError(f"cannot reach {config.api_base_url} ({type(exc).__name__}): check the server's network "
                        "and wechat.api_base_url") from exc  # fmt: skip
    except ValueError as exc:  # an answer that is not JSON: not WeChat's API at that address
        answer = f"{config.api_base_url} did not answer as WeChat's API does: check wechat.api_base_url"
        raise MenuError(answer) from exc
    return menu


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `vipbot wechat menu [--dry-run] [--config FILE]` (dispatched to `menu_command`)."""
    wechat = subparsers.add_parser("wechat", help="WeChat Official Account set-up").add_subparsers(
        dest="wechat_command", required=True
    )
    menu = wechat.add_parser("menu", help="push the custom menu from wechat.menu (and wechat.menu_layout) to WeChat")
    menu.add_argument("--dry-run", action="store_true", help="print the menu's JSON instead of pushing it")
    menu.add_argument("--config", help="configuration file (default: ./config.yaml)")


def menu_command(args: argparse.Namespace, settings: Settings) -> int:
    """`vipbot wechat menu`: 0 when pushed (or printed with --dry-run), 2 when WeChat refuses or cannot be reached."""
    config = settings.wechat
    if getattr(args, "dry_run", False):
        print(json.dumps(menu_json(config), ensure_ascii=False, indent=2))
        return 0
    try:
        menu = push_menu(config)
    except MenuError as exc:
        print(f"vipbot: menu not pushed: {exc}", file=sys.stderr)
        return 2
    keys = sum(len(b.get("sub_button", [])) or 1 for b in menu["button"])
    print(f"menu pushed: {len(menu['button'])} buttons, {keys} entries: {summary(menu)}")
    print("WeChat apps fetch the new menu within about 5 minutes (unfollow and follow again to see it at once).")
    return 0
