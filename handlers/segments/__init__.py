"""RFM segments (RFM 分层) for staff, announcement audiences, and win-back care messages."""
