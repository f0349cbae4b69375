"""The runtime: configuration, the command line, channel adapters (Telegram, console) and the scheduler."""

import os

# Opt in to python-telegram-bot's coming behaviour (durations as timedelta, e.g. RetryAfter.retry_after)
# before it is imported anywhere, so it does not warn on every 429; our code handles both forms.
os.environ.setdefault("PTB_TIMEDELTA", "1")
