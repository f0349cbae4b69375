"""wechatpy's synchronous client, pointed at a configurable API base (a test server, or a proxy).

It is only ever called from a worker thread (`asyncio.to_thread`), never on the event loop. Every request is
bounded by the client's timeout, the token's included (wechatpy fetches it with none, so a silent network would
hang that thread for good).

The access token lives in wechatpy's session storage: in memory for a client of its own (the doctor, `vipbot
wechat menu`), in the database for the running bot (`bot.wechat.tokens.SharedSession`, see `share`). Only a
leading client fetches one from WeChat; a following client waits for the leader's token, and when WeChat refuses
a token (40001, 40014, 42001) marks that token refused for the leader to replace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from wechatpy import WeChatClient

from bot.wechat.tokens import USABLE_MARGIN_SECONDS, WAIT_SECONDS, SharedSession


class TimeoutSession(requests.Session):
    """A requests session that gives every request without a timeout this one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


def _always() -> bool:
    return True


class ShopWeChatClient(WeChatClient):  # type: ignore[misc]
    def __init__(self, app_id: str, secret: str, api_base_url: str, timeout: float = 10.0) -> None:
        super().__init__(app_id, secret, timeout=timeout)
        self.API_BASE_URL = api_base_url.rstrip("/") + "/"
        self._http = TimeoutSession(timeout)  # wechatpy's session attribute: its token fetch passes no timeout
        self.leading: Callable[[], bool] = _always
        self.shared: SharedSession | None = None
        self.token_wait = WAIT_SECONDS
        self._fetching = threading.Lock()
        self._request_state = threading.local()

    def share(self, session: SharedSession, leading: Callable[[], bool], token_wait: float = WAIT_SECONDS) -> None:
        """Keep the token in the database `session`; fetch it from WeChat only while `leading()`."""
        self.session = self.shared = session
        self.leading = leading
        self.token_wait = token_wait

    @property
    def access_token(self) -> str:
        """A usable token: the stored one, else (leader) a new one from WeChat or (follower) the leader's."""
        token = self.session.get(self.access_token_key)
        if token and (self.shared is not None or self._fresh_in_memory()):
            return str(token)
        self.fetch_access_token()
        return str(self.session.get(self.access_token_key))

    def _fresh_in_memory(self) -> bool:
        """wechatpy's own rule for its memory storage: the token is good until a minute before it expires."""
        return not self.expires_at or self.expires_at - time.time() > USABLE_MARGIN_SECONDS

    def _handle_result(self, res: Any, method: Any = None, url: Any = None, result_processor: Any = None,
                       **kwargs: Any) -> Any:  # fmt: skip
        """wechatpy's answer handling; on a refused token it calls `fetch_access_token`, which then knows which
        token was refused (the one this request carried)."""
        params = kwargs.get("params")
        self._request_state.used = params.get("access_token") if isinstance(params, dict) else None
        try:
            return super()._handle_result(res, method, url, result_processor, **kwargs)
        finally:
            self._request_state.used = None

    def fetch_access_token(self) -> dict[str, Any]:
        """A usable token into the session: fetched from WeChat by the leader (once for all threads that ask at
        the same time), waited for by a follower. wechatpy calls this when WeChat refused a token too."""
        refused: str | None = getattr(self._request_state, "used", None)
        key = self.access_token_key
        if self.shared is not None and not self.leading():
            self.shared.refuse(key, refused)
            token = self.shared.wait_for(key, refused, self.token_wait)
            return {"access_token": token}
        with self._fetching:  # another thread may have fetched one meanwhile
            if self.shared is not None:
                stored = self.shared.stored(key)  # the database's, not this process's cache
                if stored is not None and self.shared.usable(stored) and stored.value != refused:
                    return {"access_token": stored.value}
            else:
                current = self.session.get(key)
                if current and current != refused and self._fresh_in_memory():
                    return {"access_token": current}
            return self._fetch_from_wechat()

    def renew_access_token(self, unless_valid_for: int = 0) -> dict[str, Any] | None:
        """Fetch a new token from WeChat now (the leader's refresh ahead of expiry), unless the stored one is good
        for more than `unless_valid_for` seconds by now (another thread fetched one meanwhile): then None."""
        with self._fetching:
            if self.shared is not None and unless_valid_for > 0:
                stored = self.shared.stored(self.access_token_key)
                if stored is not None and stored.value and stored.expires_at - self.shared.now() > unless_valid_for:
                    return None
            return self._fetch_from_wechat()

    def _fetch_from_wechat(self) -> dict[str, Any]:
        # wechatpy hard-codes api.weixin.qq.com here; use the configured base like every other call.
        return self._fetch_access_token(
            url=f"{self.API_BASE_URL}token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )
