"""Membership: /start, the profile (/me) and the birthday."""
