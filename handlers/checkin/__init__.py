"""Daily check-in (签到) and the group's check-in board (签到榜)."""
