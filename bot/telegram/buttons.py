"""Keyboards from neutral buttons: inline keyboards, where short labels (scores, stars) share rows and long ones
get their own; and the key under the input field that shares the member's own phone number (`SHARE_CONTACT`,
offered once: it goes away after use) and its removal (`CLOSE_KEYBOARD`)."""

from __future__ import annotations

from collections.abc import Sequence

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from handlers.core.messages import Button

SHORT_LABEL = 4
PER_ROW = 6
SHARE_CONTACT = "keyboard:contact"
"""The data of a button that stands for the phone-sharing key (never callback data: those start with v1:)."""
CLOSE_KEYBOARD = "keyboard:close"


def button_rows(buttons: Sequence[Button]) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None:
    if not buttons:
        return None
    if buttons[0].data == SHARE_CONTACT:
        key = KeyboardButton(buttons[0].label, request_contact=True)
        return ReplyKeyboardMarkup([[key]], one_time_keyboard=True, resize_keyboard=True)
    if buttons[0].data == CLOSE_KEYBOARD:
        return ReplyKeyboardRemove()
    rows: list[list[InlineKeyboardButton]] = []
    for button in buttons:
        key = InlineKeyboardButton(button.label, callback_data=button.data)
        short = len(button.label) <= SHORT_LABEL
        if short and rows and len(rows[-1]) < PER_ROW and len(rows[-1][-1].text) <= SHORT_LABEL:
            rows[-1].append(key)
        else:
            rows.append([key])
    return InlineKeyboardMarkup(rows)
