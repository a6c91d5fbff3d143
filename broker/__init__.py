"""RabbitMQ: one topology shared by the pump and the worker, and dead-letter replay."""
