"""Member and staff texts say things as people do: no internal values (`5d`, `now`, `queued`, `None`, `<- #1`),
English counts with plural forms, Chinese names and tiers inside the sentence without spaces, lists with `、`."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from bot.app.config import Settings
from bot.delivery.outbox import Outcome, PushResult
from handlers.announcements.commands import report_outcomes
from handlers.core.clock import FakeClock
from handlers.core.i18n import Catalog, _flatten
from handlers.feedback.commands import escalate
from tests.conftest import ChatDriver, RecordingPusher, settle, storage_for

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ROOT / "handlers"

CATALOGS = tuple(sorted(path.parent.parent.name for path in HANDLERS.glob("*/texts/zh_CN.yaml")))
"""The catalog files this scan holds to the rules below: all of them."""

WORDS = "name|tier|tiers|item|title|referrer|referred|member|segment|mention|option|question"
"""Placeholders that stand for a name, a tier or an item: words, not numbers."""

CJK = r"[\u4e00-\u9fff]"
SPACED = re.compile(rf"{CJK} \{{(?:{WORDS})\}}|\{{(?:{WORDS})\}} {CJK}")

PLURAL_NOUNS = (
    "days|hours|minutes|points|recipients|members|messages|deliveries|units|rows|pages|purchases|codes|votes"
    "|answers|buyers|greetings|people|items|invites|tickets|entries|characters"
)
COUNTED = re.compile(rf"\{{(?!(?:{WORDS})\}})(\w+)\}}[- ](?:[\w-]+ )?(?:{PLURAL_NOUNS})\b|\(s\)")
"""A number placeholder followed by a plural noun ('{count} recipients'), or a '(s)'."""


def _texts(locale: str, name: str) -> dict[str, str]:
    return _flatten(yaml.safe_load((HANDLERS / name / "texts" / f"{locale}.yaml").read_text(encoding="utf-8")) or {})


# --- the catalogs ---------------------------------------------------------------------------------------
def test_zh_cn_names_and_tiers_have_no_spaces_around_them_inside_chinese() -> None:
    spaced = [
        f"{name}.yaml {key}: {text}"
        for name in CATALOGS
        for key, text in _texts("zh_CN", name).items()
        if SPACED.search(text)
    ]
    assert spaced == []


def test_en_counts_use_plural_forms() -> None:
    """A text that counts something has `.one` / `.other` forms (or says the number as a figure: 'stock 5')."""
    singular_only = [
        f"{name}.yaml {key}: {text}"
        for name in CATALOGS
        for key, text in _texts("en", name).items()
        if not key.endswith((".one", ".other")) and COUNTED.search(text)
    ]
    assert singular_only == []


def test_lists_are_joined_the_way_the_locale_writes_them() -> None:
    assert Catalog("zh_CN").join(["金卡", "钻石", "黑卡"]) == "金卡、钻石、黑卡"
    assert Catalog("en").join(["Gold", "Diamond"]) == "Gold, Diamond"
    assert Catalog("en").join([]) == ""


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Chinese for the tests named `..._zh_...`, else English; a test may add settings by parametrizing
    `settings` indirectly with a dict of them."""
    locale = "zh_CN" if "_zh_" in request.node.name else "en"
    extra = getattr(request, "param", {})
    return Settings(locale=locale, storage=storage_for(tmp_path / "vip.db"), **extra)


# --- English, end to end ----------------------------------------------------------------------------------
async def test_en_says_one_recipient_one_point_one_day(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("carol", "/start", group=False)
    assert "queued for 1 recipient." in await chat.say("boss", "/announce --tier gold Hello")
    await chat.say("boss", "/award @carol 1799")
    points = await chat.say("carol", "/points", group=False)
    assert "1 more point to Black card" in points
    await chat.say("carol", "/checkin")
    assert "Check-in streak: 1 day\n" in await chat.say("carol", "/me", group=False)


async def test_en_plan_lines_and_countdown_of_the_next_check_in(chat: ChatDriver, pusher: RecordingPusher) -> None:
    created = await chat.say("boss", "/event add 2026-03-20 19:00 Tasting | new teas")
    assert "· 5 days ahead: 2026-03-15 19:00" in created and "· 1 day ahead: 2026-03-19 19:00" in created
    assert "· 2 hours ahead: 2026-03-20 17:00" in created
    await chat.say("bob", "/checkin")
    again = await chat.say("bob", "/checkin")
    assert "Next check-in opens 2026-03-11 00:00 (in 15 hours)." in again  # the clock stands at 09:00


# --- Chinese, end to end ----------------------------------------------------------------------------------
async def test_zh_scheduled_and_plans_show_no_internal_values(chat: ChatDriver, pusher: RecordingPusher) -> None:
    created = await chat.say("boss", "/event add 2026-03-20 19:00 品茶会 | 新茶")
    assert "· 提前 5 天：2026-03-15 19:00" in created and "· 提前 2 小时：2026-03-20 17:00" in created
    sale = await chat.say("boss", "/sale add 托特包 | price=199 stock=5 start=2026-03-20 10:00")
    assert "· 提前 3 天：2026-03-17 10:00" in sale
    assert "· 黑卡会员提前抢购：2026-03-20 09:50" in sale
    listing = await chat.say("boss", "/scheduled")
    assert "［活动 #1 提前 5 天］" in listing and "［秒杀 #1 提前 5 天］" in listing
    for internal in ("None", "5d", "3d", "1d", "2h", "now", "promo", "sale_early", "sale_start"):
        assert internal not in listing, internal
    assert "［秒杀 #1 开抢］" in listing


async def test_zh_delivery_status_and_report_name_what_they_mean(chat: ChatDriver, pusher: RecordingPusher) -> None:
    for who in ("alice", "carol"):
        await chat.say(who, "/start", group=False)
    pusher.script["alice"] = [PushResult(Outcome.UNCERTAIN, "TimedOut: read timeout")]
    pusher.script["carol"] = [PushResult(Outcome.FAILED, "Forbidden: bot was blocked by the user")]
    await chat.say("boss", "/announce 新品到店")
    await settle(chat.runtime)
    pusher.script[""] = [PushResult(Outcome.FAILED, "chat not found")]  # the staff chat, where the report goes
    assert await report_outcomes(chat.runtime.deps) == 1
    await settle(chat.runtime)
    status = await chat.say("boss", "/delivery 1")
    assert status.startswith("公告 #1（已发布）：共 3 个接收方，已发送 1，等待中 0，失败 1，不确定 1。")
    for internal in ("queued", "sent", "pending", "uncertain", "None"):
        assert internal not in status, internal
    async with chat.runtime.deps.db.read() as repos:
        report = await repos.announcements.get(2)
    assert report is not None and "有 1 条状态不确定" in report.text and "这位会员可能会收到两次" in report.text
    assert "失败：店员群 — chat not found" in await chat.say("boss", "/delivery 2")


async def test_zh_names_tiers_and_lists(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("carol", "/start", group=False)
    award = await chat.say("boss", "/award @carol 700")
    assert "已给Carol加 700 积分" in award and "恭喜Carol升级为钻石会员！" in award
    points = await chat.say("carol", "/points", group=False)
    assert points.startswith("Carol的积分：700") and "距离黑卡还差 1100 积分" in points
    assert "可用的等级：gold、diamond、black" in await chat.say("boss", "/announce --tier platinum 你好")
    assert "（也可以发送：签到、打卡）" in await chat.say("carol", "/help", group=False)
    queued = await chat.say("boss", "/announce --segment never 你好")
    assert queued.startswith("已排队私信给未消费分层：") and "never" not in queued


async def test_zh_merge_entries_say_which_member(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("carol", "/start", group=False)
    async with chat.runtime.deps.db.transaction() as repos:
        await repos.ledger.append(1, 30, "merge", "merge:test", chat.runtime.deps.now_ts(), note="<- #7",
                                  earned_delta=30)  # fmt: skip
    points = await chat.say("carol", "/points", group=False)
    assert "<-" not in points and "会员 #7" in points


async def test_zh_check_in_countdown(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("bob", "签到")
    again = await chat.say("bob", "签到")
    assert "下次签到时间：2026-03-11 00:00（还有 15 小时）。" in again


async def test_zh_sale_export_headers_and_states_are_chinese(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("alice", "/start", group=False)
    await chat.say("boss", "/sale add 托特包 | price=199 stock=5 start=2026-03-10 09:30 --force")
    clock.advance(timedelta(minutes=31))
    await chat.say("alice", "抢 1")
    replies = await chat.replies("boss", "/sale export 1")
    document = next(r.document for r in replies if r.document is not None)
    header, first = document[1].decode("utf-8-sig").splitlines()[:2]
    assert re.search(CJK, header) and "member" not in header and "state" not in header
    assert "待付款" in first and "held" not in first


async def test_zh_weekly_chart_words_come_from_the_catalog(
    chat: ChatDriver, pusher: RecordingPusher, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handlers.stats.chart
    import handlers.stats.commands

    drawn: list[object] = []
    monkeypatch.setattr(handlers.stats.chart, "cjk_font", lambda: "Noto Sans CJK SC", raising=False)  # installed
    monkeypatch.setattr(handlers.stats.commands, "weekly_chart", lambda words, *series: drawn.append(words) or b"")
    await chat.say("boss", "/report")
    (words,) = drawn
    assert "每周报表" in str(words) and "Weekly" not in str(words) and "Check-ins" not in str(words)
    monkeypatch.setattr(handlers.stats.chart, "cjk_font", lambda: None)  # no font draws Chinese: plain ASCII
    await chat.say("boss", "/report")
    assert all(word.isascii() for word in vars_of(drawn[-1]))


def vars_of(words: object) -> list[str]:
    return [getattr(words, name) for name in ("title", "checkins", "new_members", "points", "issued", "redeemed")]


# --- counts and names in every feature ---------------------------------------------------------------------
def test_the_scans_read_every_catalog_of_both_locales() -> None:
    assert "events" in CATALOGS and "feedback" in CATALOGS and "binding" in CATALOGS
    assert set(CATALOGS) == {path.parent.parent.name for path in HANDLERS.glob("*/texts/en.yaml")}


async def test_en_staff_bookings_say_one_point(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("alice", "/start", group=False)
    assert "Gave Alice 1 point. Balance 1." in await chat.say("boss", "/award @alice 1")
    assert "Alice has only 1 point; cannot take 5." in await chat.say("boss", "/deduct @alice 5")
    assert "Took 1 point from Alice. Balance 0." in await chat.say("boss", "/deduct @alice 1")
    assert "Recorded a ¥1.50 purchase for Alice, +1 point. Balance 1." in await chat.say("boss", "/purchase @alice 1.5")


@pytest.mark.parametrize("settings", [{"events": {"promo_lead_days": 1}}], indirect=True)
async def test_en_event_texts_count_one_day_one_recipient_one_point(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    too_soon = await chat.say("boss", "/event add 2026-03-10 20:00 Tasting")  # the clock stands at 09:00
    assert "1-day" in too_soon and "1 days" not in too_soon
    bent = await chat.say("boss", "/event add 2026-03-10 20:00 Tasting --points 1 --force")
    assert "Event #1 created" in bent and "1-day" in bent and "1 days" not in bent
    await chat.say("alice", "/join 1")
    clock.advance(timedelta(hours=11, minutes=30))  # the event is on
    assert 'Recorded Alice at "Tasting", +1 point.' in await chat.say("boss", "/event attend 1 @alice")
    await chat.say("boss", "/event add 2026-03-20 19:00 Party")
    await chat.say("bob", "/join 2")
    cancelled = await chat.say("boss", "/event cancel 2")
    assert cancelled.endswith("for 1 recipient.")  # bob, the one who signed up


@pytest.mark.parametrize(
    ("settings", "within"),
    [({"feedback": {"answer_within_hours": 1}}, "1 hour"), ({"feedback": {"answer_within_hours": 0.5}}, "30 minutes")],
    indirect=["settings"],
)
async def test_en_the_promised_answer_time_is_said_with_its_unit(
    chat: ChatDriver, pusher: RecordingPusher, within: str
) -> None:
    received = await chat.say("alice", "投诉 快递太慢了")
    assert f"We will answer within {within}, by 2026-03-10 " in received and "hours" not in received
    pointer = await chat.say("alice", "你好", group=False)
    assert f"we answer within {within}." in pointer and "hours" not in pointer


@pytest.mark.parametrize("settings", [{"referrals": {"referrer_points": 1, "referred_points": 0}}], indirect=True)
async def test_en_linking_says_one_point(chat: ChatDriver, pusher: RecordingPusher) -> None:
    wechat = ChatDriver(chat.runtime, chat.port, channel="wechat")
    invite = re.search(r"\?start=ref_([A-Z0-9]+)", await chat.say("alice", "/invite"))
    assert invite is not None
    await wechat.say("ann", f"邀请 {invite.group(1)}", group=False)
    await wechat.say("boss", "/purchase @ann 0.50")  # pays Alice her 1 invite point
    await chat.say("boss", "/deduct @alice 1")  # and she has spent it
    code = re.search(r"Your link code: (B-[A-Z0-9]+)", await chat.say("alice", "/bind", group=False))
    assert code is not None
    spent = await wechat.say("ann", f"绑定 {code.group(1)}", group=False)
    assert "These two accounts earned 1 invite point from each other" in spent
    code = re.search(r"Your link code: (B-[A-Z0-9]+)", await chat.say("carol", "/bind", group=False))
    assert code is not None
    await chat.say("boss", "/award @carol 1")
    linked = await wechat.say("cy", f"绑定 {code.group(1)}", group=False)
    assert "Both accounts are now member Carol: 1 point, tier" in linked


@pytest.mark.parametrize("settings", [{"messages": {"common.list_separator": " / "}}], indirect=True)
async def test_en_polls_list_options_and_tiers_the_way_the_catalog_joins_lists(
    chat: ChatDriver, pusher: RecordingPusher
) -> None:
    await chat.say("boss", "/poll choice Which new tea? | Oolong | Pu'er | Jasmine --multi")
    assert "Your answer: Oolong / Jasmine." in await chat.say("ann", "/vote 1 1 3")
    await chat.say("boss", "/poll rating How was it? --tier diamond,black")
    assert "This poll is for Diamond / Black card members." in await chat.say("ann", "/vote 2 5")


async def test_zh_event_show_names_each_promo_in_words(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("boss", "/event add 2026-03-20 19:00 品茶会")
    await chat.say("boss", "/event add 2026-03-12 19:00 小聚 --force")  # inside the five days: one promo at once
    await chat.say("boss", "/event cancel 1")
    shown = await chat.say("boss", "/event show 1")
    assert "· 公告 #1 提前 5 天：2026-03-15 19:00（已取消）" in shown
    assert "· 公告 #3 提前 1 天：2026-03-19 19:00（已取消）" in shown
    assert "· 公告 #4 提前 2 小时：2026-03-20 17:00（已取消）" in shown
    (cancel,) = [line for line in shown.splitlines() if "取消通知" in line]
    assert re.fullmatch(r"· 公告 #\d+ 取消通知：2026-03-10 09:00（已发布）", cancel)
    now = await chat.say("boss", "/event show 2")
    assert "立即发出：2026-03-10 09:00" in now
    for internal in ("5d", "1d", "2h", "now", "cancel", "提前 立即"):
        assert internal not in shown + now, internal


async def test_zh_event_sign_ups_and_attendance_name_the_member_without_spaces(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("boss", "/event add 2026-03-20 19:00 品茶会 --capacity 1")
    assert "小王报名成功：品茶会（2026-03-20 19:00），已报名 1/1。" in await chat.say("小王", "报名 1")
    assert "小王已经报过名了：品茶会（2026-03-20 19:00）。" in await chat.say("小王", "报名 1")
    assert "抱歉，品茶会名额已满（1/1）。" in await chat.say("小李", "报名 1")
    clock.advance(timedelta(days=10, hours=10, minutes=30))  # the event is on
    assert "已记录小王参加“品茶会”，+20 积分。" in await chat.say("boss", "/event attend 1", reply_to="小王")
    assert "小王的到场已经记录过了（活动 #1）。" in await chat.say("boss", "/event attend 1", reply_to="小王")


async def test_zh_feedback_texts_name_the_member_without_spaces(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("小李", "/start", group=False)
    await chat.say("小王", "投诉 快递太慢了")
    await chat.say("小李", "建议 周末多开一会儿")
    await settle(chat.runtime)
    assert any("来自小王" in text for kind, _, text in pusher.pushes if kind == "staff")
    listing = await chat.say("boss", "/tickets")
    assert "#1 小王的投诉，" in listing and "#2 小李的建议，" in listing
    clock.advance(timedelta(hours=20))
    assert await escalate(chat.runtime.deps) == 2
    await settle(chat.runtime)
    assert any("（小王的投诉）已等待" in text for kind, _, text in pusher.pushes if kind == "staff")
    assert "无法私信小王，工单 #1 的答复将发到当初提交的群里。" in await chat.say("boss", "/reply 1 抱歉，已补发。")
    assert "工单 #2 的答复已私信发给小李。" in await chat.say("boss", "/reply 2 好的，谢谢！")
    assert (await chat.say("boss", "/tickets 1")).startswith("工单 #1：小王的投诉（已答复）")
    assert "工单 #1 已关闭，已在当初提交的群里邀请小王评分。" in await chat.say("boss", "/close 1")
    assert "工单 #2 已关闭，已私信邀请小李评分。" in await chat.say("boss", "/close 2")
