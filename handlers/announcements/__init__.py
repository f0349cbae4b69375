"""Staff announcements: now, scheduled, their delivery outcome, and the member's /notify switch."""
