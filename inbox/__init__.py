"""The inbox daemon: reads senders' IMAP inboxes and acts on replies, bounces, complaints."""
