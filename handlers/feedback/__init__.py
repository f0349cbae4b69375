"""The feedback desk (投诉建议): tickets, staff replies, ratings and escalation."""
