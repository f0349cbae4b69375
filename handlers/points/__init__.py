"""Points (积分): the member's balance and history, and staff bookings (/award, /deduct, /purchase)."""
