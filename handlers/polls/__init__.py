"""Polls (满意度调查): ratings, NPS, choices and rankings; answers, closing and results."""
