"""Channel-agnostic use cases: each handler takes a neutral Inbound and returns Replies.

Nothing in this package imports a platform library (telegram, wechatpy); a test enforces it.
"""
