"""The pump daemon: publishes outbox rows to RabbitMQ with confirms, then marks them."""
