"""The console channel, driven through stdin in a subprocess exactly as a user scripts it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vipbot(args: list[str], stdin: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VIPBOT_") and k != "TELEGRAM_BOT_TOKEN"}
    environment |= {"VIPBOT_STORAGE__PATH": str(tmp_path / "data" / "console.db"), "PYTHONIOENCODING": "utf-8"}
    environment |= env
    return subprocess.run(
        [sys.executable, "-m", "bot.app.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
        check=False,
    )


def test_scripted_console_session(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/checkin",
            "/points",
            "签到",
            "/award @小王 5",
            "/as 店长",
            "/award @小王 700 生日礼物",
            "/as 小红",
            "/checkin",
            "/as 小王",
            "积分",
            "/birthday 02-30",
            "/frobnicate",
        ]
    )
    result = vipbot(["console"], script + "\n", tmp_path)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert out.count("签到成功！+10 积分（连续 1 天）") == 2  # 小王 and 小红
    assert "小王的积分：10" in out
    assert "今天已经签过到啦" in out
    assert "抱歉，这个命令只有具备“店长”权限的店员可以使用。" in out  # 小王 is not staff
    assert "(now playing 店长, staff)" in out
    assert "已给小王加 700 积分。现有 710 积分。" in out
    assert "恭喜小王升级为钻石会员" in out
    assert "小王的积分：710" in out and "等级：钻石" in out
    assert "“02-30”不是有效的日期" in out
    assert "没有这个命令" in out
    assert (tmp_path / "data" / "console.db").exists()


def test_the_database_outlives_the_session(tmp_path: Path) -> None:
    vipbot(["console"], "/checkin\n", tmp_path)
    again = vipbot(["console"], "/points\n", tmp_path)
    assert "小王的积分：10" in again.stdout


def test_playing_staff_by_flag_and_english(tmp_path: Path) -> None:
    script = "/as Alice\n/checkin\n/as Boss staff\n/award @Alice 3 thanks\n/help\n"
    out = vipbot(["console"], script, tmp_path, VIPBOT_LOCALE="en").stdout
    assert "Gave Alice 3 points. Balance 13." in out
    assert "Staff commands:" in out


def test_run_without_credentials_opens_the_console(tmp_path: Path) -> None:
    result = vipbot(["run"], "/checkin\n", tmp_path)
    assert result.returncode == 0
    assert "No channel has credentials" in result.stderr
    assert "签到成功" in result.stdout


def test_a_bad_config_is_reported_with_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("timezone: Nowhere/City\nlocale: xx\n", encoding="utf-8")
    result = vipbot(["run", "--config", str(bad)], "", tmp_path)
    assert result.returncode == 2
    assert "timezone" in result.stderr and "locale" in result.stderr
    assert "Traceback" not in result.stderr


def test_announcements_and_events_print_in_the_console(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/as 店长",
            "/announce 周五上新，老客户九折",
            "/event add 2099-06-01 19:30 品茶会 | 十款新茶",
            "/event add 2000-01-01 10:00 太早了",
            "/as 小王",
            "/events",
            "报名 1",
        ]
    )
    out = vipbot(["console"], script + "\n", tmp_path).stdout
    assert re.search(r"公告 #\d+ 已排队，共 1 个接收方", out)  # holiday greetings may have taken #1
    assert "📣 [VIP group] 周五上新，老客户九折" in out
    assert "活动 #1 已创建：品茶会，2099-06-01 19:30。" in out
    assert "2000-01-01 10:00 已经过去了" in out
    assert "#1 2099-06-01 19:30 品茶会（已报名 0）" in out
    assert "小王报名成功：品茶会" in out


def test_buttons_can_be_pressed_in_the_console(tmp_path: Path) -> None:
    script = "/as 店长\n/poll rating 服务满意吗 --hours 2\n/as 小王\n/press 4\n/press 9\n/as 店长\n/poll results 1\n"
    out = vipbot(["console"], script, tmp_path).stdout
    assert "您的答案：4" in out and "(no button 9 to press; 5 shown last)" in out
    assert "平均 4.00 分" in out and "[picture " in out
