"""wechatpy's synchronous client, pointed at a configurable API base (a test server, or a proxy).

It is only ever called from a worker thread (`asyncio.to_thread`), never on the event loop. The access
token is cached by wechatpy's session storage until it expires, and fetched again after (or on 40001). Every
request is bounded by the client's timeout, the token's included (wechatpy fetches it with none, so a silent
network would hang that thread for good).
"""

from __future__ import annotations

from typing import Any

import requests
from wechatpy import WeChatClient


class TimeoutSession(requests.Session):
    """A requests session that gives every request without a timeout this one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


class ShopWeChatClient(WeChatClient):  # type: ignore[misc]
    def __init__(self, app_id: str, secret: str, api_base_url: str, timeout: float = 10.0) -> None:
        super().__init__(app_id, secret, timeout=timeout)
        self.API_BASE_URL = api_base_url.rstrip("/") + "/"
        self._http = TimeoutSession(timeout)  # wechatpy's session attribute: its token fetch passes no timeout

    def fetch_access_token(self) -> dict[str, Any]:
        # wechatpy hard-codes api.weixin.qq.com here; use the configured base like every other call.
        return self._fetch_access_token(
            url=f"{self.API_BASE_URL}token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )
