"""Inline keyboards from neutral buttons: short labels (scores, stars) share rows, long ones get their own."""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from handlers.core.messages import Button

SHORT_LABEL = 4
PER_ROW = 6


def button_rows(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    for button in buttons:
        key = InlineKeyboardButton(button.label, callback_data=button.data)
        short = len(button.label) <= SHORT_LABEL
        if short and rows and len(rows[-1]) < PER_ROW and len(rows[-1][-1].text) <= SHORT_LABEL:
            rows[-1].append(key)
        else:
            rows.append([key])
    return InlineKeyboardMarkup(rows)
