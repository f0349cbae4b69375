"""The WeChat Official Account channel: the webhook adapter, the API client and customer-service pushes."""
