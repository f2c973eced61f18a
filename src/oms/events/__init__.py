"""An order's events on their ways out: webhooks (``signing``, ``schedule``, ``sender``) and NATS JetStream
(``nats``). Each module stands alone; the relay that feeds them from the outbox is built apart."""
