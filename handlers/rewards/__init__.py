"""The points rewards shop (积分兑换): rewards, redemptions and their codes."""
