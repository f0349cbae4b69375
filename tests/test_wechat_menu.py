"""`vipbot wechat menu`: the custom menu pushed in WeChat's documented JSON to the fake WeChat API (which checks it
as WeChat does), layouts refused at config load, and WeChat's refusals as one line with the fix and exit code 2."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app.config import ConfigError, Settings, load_settings
from bot.wechat.menu import add_parser, menu_command
from tests.fakes.wechat_api import FakeWeChatApi

APP_ID = "wx0123456789abcdef"

DEFAULT_MENU = {
    "button": [
        {"type": "click", "name": "签到", "key": "CHECKIN"},
        {"type": "click", "name": "积分", "key": "POINTS"},
        {
            "name": "更多",
            "sub_button": [
                {"type": "click", "name": "我的", "key": "ME"},
                {"type": "click", "name": "活动", "key": "EVENTS"},
                {"type": "click", "name": "积分商城", "key": "REWARDS"},
                {"type": "click", "name": "调查", "key": "POLLS"},
                {"type": "click", "name": "帮助", "key": "HELP"},
            ],
        },
    ]
}


@pytest.fixture
async def api() -> AsyncIterator[FakeWeChatApi]:
    fake = await FakeWeChatApi(app_secret="secret").start()
    try:
        yield fake
    finally:
        await fake.stop()


def settings_for(api: FakeWeChatApi | None, **wechat: Any) -> Settings:
    base = {"app_id": APP_ID, "token": "shoptoken", "app_secret": "secret",
            "api_base_url": api.base_url if api else "http://127.0.0.1:9/cgi-bin/"}  # fmt: skip
    return Settings(wechat={**base, **wechat})


async def access_token(http: httpx.AsyncClient, api: FakeWeChatApi) -> str:
    query = {"grant_type": "client_credential", "appid": APP_ID, "secret": "secret"}
    return str((await http.get(api.base_url + "token", params=query)).json()["access_token"])


async def push(settings: Settings, *, dry_run: bool = False) -> int:
    """Run the command as the CLI does (synchronously, wechatpy), off the loop that serves the fake."""
    return await asyncio.to_thread(menu_command, argparse.Namespace(dry_run=dry_run), settings)


async def test_the_default_menu_is_pushed_in_the_documented_json(
    api: FakeWeChatApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await push(settings_for(api)) == 0
    assert api.menu == DEFAULT_MENU
    (raw,) = api.menu_requests
    assert "积分商城".encode() in raw  # the characters themselves: WeChat refuses \uXXXX escapes (40033)
    out = capsys.readouterr().out
    assert out.startswith("menu pushed: 3 buttons, 7 entries: 签到, 积分, 更多 (我的 / 活动 / 积分商城 / 调查 / 帮助)")
    async with httpx.AsyncClient() as http:  # what WeChat now answers menu/get with
        token = await access_token(http, api)
        got = (await http.get(api.base_url + "menu/get", params={"access_token": token})).json()
    assert [b["name"] for b in got["menu"]["button"]] == ["签到", "积分", "更多"]
    assert [s["key"] for s in got["menu"]["button"][2]["sub_button"]] == ["ME", "EVENTS", "REWARDS", "POLLS", "HELP"]


async def test_an_explicit_layout_is_pushed_as_written(api: FakeWeChatApi) -> None:
    settings = settings_for(
        api,
        menu={"CHECKIN": "签到", "POINTS": "积分", "ME": "我的", "SHOP": "积分商城", "HELP": "帮助"},
        menu_layout=["CHECKIN", {"name": "会员", "keys": ["POINTS", "ME"]}, {"name": "服务", "keys": ["SHOP", "HELP"]}],
    )
    assert await push(settings) == 0
    assert api.menu == {
        "button": [
            {"type": "click", "name": "签到", "key": "CHECKIN"},
            {"name": "会员", "sub_button": [{"type": "click", "name": "积分", "key": "POINTS"},
                                            {"type": "click", "name": "我的", "key": "ME"}]},
            {"name": "服务", "sub_button": [{"type": "click", "name": "积分商城", "key": "SHOP"},
                                            {"type": "click", "name": "帮助", "key": "HELP"}]},
        ]
    }  # fmt: skip


async def test_three_keys_or_fewer_are_all_top_level_buttons(api: FakeWeChatApi) -> None:
    assert await push(settings_for(api, menu={"CHECKIN": "签到", "HELP": "帮助"})) == 0
    assert api.menu == {"button": [{"type": "click", "name": "签到", "key": "CHECKIN"},
                                   {"type": "click", "name": "帮助", "key": "HELP"}]}  # fmt: skip


def load(tmp_path: Path, wechat: dict[str, Any]) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"wechat": wechat}, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return load_settings(path)


def test_a_too_long_name_is_refused_at_config_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, {"menu": {"CHECKIN": "每日签到领积分", "HELP": "帮助"}})  # 7 characters: 21 bytes
    message = str(refused.value)
    assert "wechat" in message and "'每日签到领积分' is 21 bytes" in message and "1-16" in message
    # Under a parent the same name fits: a sub-button may have 60 bytes (20 Chinese characters), not 61.
    fits = load(tmp_path, {"menu": {"CHECKIN": "每日签到领积分", "LONG": "长" * 20},
                           "menu_layout": [{"name": "会员", "keys": ["CHECKIN", "LONG"]}]})  # fmt: skip
    assert fits.wechat.menu_tree()[0].keys == ["CHECKIN", "LONG"]  # type: ignore[union-attr]
    too_long = r"sub-button \(under '会员'\) name '长{20}x' is 61 bytes; WeChat allows 1-60"
    with pytest.raises(ConfigError, match=too_long):
        load(tmp_path, {"menu": {"LONG": "长" * 20 + "x"}, "menu_layout": [{"name": "会员", "keys": ["LONG"]}]})


@pytest.mark.parametrize(
    ("wechat", "problem"),
    [
        ({"menu_layout": ["CHECKIN", "POINTS", "ME", "HELP"]}, "4 top-level buttons; WeChat allows at most 3"),
        ({"menu_layout": ["CHECKIN", "NOPE"]}, "key 'NOPE' is not in wechat.menu"),
        ({"menu_layout": ["CHECKIN", {"name": "更多", "keys": ["CHECKIN"]}]}, "key 'CHECKIN' is in the menu twice"),
        ({"menu": {f"K{i}": f"项{i}" for i in range(8)}}, "'更多' opens 6 sub-buttons; WeChat allows at most 5"),
        ({"menu_layout": [{"name": "会员中心与积分", "keys": ["ME"]}]}, "button name '会员中心与积分' is 21 bytes"),
    ],
)
def test_layouts_wechat_would_refuse_are_refused_at_load(
    tmp_path: Path, wechat: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, wechat)
    assert problem in str(refused.value)


def test_the_automatic_layout_says_how_to_choose_another(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"set wechat\.menu_layout to choose"):
        load(tmp_path, {"menu": {f"K{i}": f"项{i}" for i in range(8)}})


async def test_ip_not_whitelisted_names_the_ip_and_the_whitelist(
    api: FakeWeChatApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.refuse_ip = "203.0.113.7"
    assert await push(settings_for(api)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "errcode 40164" in line and "203.0.113.7" in line and "IP白名单" in line
    assert api.menu is None and api.menu_requests == []


async def test_a_wrong_app_secret_is_named(api: FakeWeChatApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert await push(settings_for(api, app_secret="not-the-secret")) == 2
    err = capsys.readouterr().err
    assert "errcode 40125" in err and "wrong AppSecret" in err and api.menu is None


async def test_an_account_without_the_menu_right_is_told_why(
    api: FakeWeChatApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.menu_right = False
    assert await push(settings_for(api)) == 2
    err = capsys.readouterr().err
    assert "errcode 48001" in err and "unverified subscription accounts" in err and "微信认证" in err
    assert api.menu is None


async def test_no_app_secret_and_an_unreachable_api_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert await push(settings_for(None, app_secret="")) == 2
    assert "AppSecret" in capsys.readouterr().err
    assert await push(settings_for(None)) == 2  # nothing listens on port 9
    assert "cannot reach http://127.0.0.1:9/cgi-bin/" in capsys.readouterr().err


async def test_dry_run_prints_the_json_and_sends_nothing(
    api: FakeWeChatApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await push(settings_for(api), dry_run=True) == 0
    assert json.loads(capsys.readouterr().out) == DEFAULT_MENU
    assert api.menu_requests == [] and api.token_requests == 0


def test_the_parser_registers_wechat_menu() -> None:
    parser = argparse.ArgumentParser(prog="vipbot")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["wechat", "menu", "--dry-run", "--config", "shop.yaml"])
    assert (args.command, args.wechat_command, args.dry_run, args.config) == ("wechat", "menu", True, "shop.yaml")
    assert parser.parse_args(["wechat", "menu"]).dry_run is False


@pytest.mark.parametrize(
    ("menu", "errcode"),
    [
        ({"button": [{"type": "click", "name": f"b{i}", "key": f"K{i}"} for i in range(4)]}, 40016),
        ({"button": [{"type": "click", "name": "签到签到签xy", "key": "K"}]}, 40018),  # 17 bytes
        ({"button": [{"type": "tap", "name": "签到", "key": "K"}]}, 40017),
        ({"button": [{"type": "click", "name": "签到", "key": "K" * 129}]}, 40019),
        ({"button": [{"name": "更多", "sub_button": [{"type": "click", "name": f"s{i}", "key": f"S{i}"}
                                                     for i in range(6)]}]}, 40023),
        ({"button": [{"name": "更多", "sub_button": [{"type": "click", "name": "长" * 21, "key": "S"}]}]}, 40025),
    ],
)
async def test_the_fake_refuses_menus_as_wechat_does(api: FakeWeChatApi, menu: dict[str, Any], errcode: int) -> None:
    async with httpx.AsyncClient() as http:
        token = await access_token(http, api)
        answer = (await http.post(api.base_url + "menu/create", params={"access_token": token},
                                  content=json.dumps(menu, ensure_ascii=False).encode())).json()  # fmt: skip
        escaped = (await http.post(api.base_url + "menu/create", params={"access_token": token},
                                   content=json.dumps(DEFAULT_MENU).encode())).json()  # fmt: skip
    assert answer["errcode"] == errcode and " rid: " in answer["errmsg"]
    assert escaped["errcode"] == 40033 and api.menu is None
