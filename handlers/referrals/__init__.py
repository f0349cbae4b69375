"""Referrals (老带新): invite links and codes, attribution, and rewards on the first purchase."""
