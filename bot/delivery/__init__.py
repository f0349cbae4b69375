"""Messages out: the outbox that drains the delivery table, and the sender that paces replies per chat."""
