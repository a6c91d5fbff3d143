"""The worker daemon: consumes send jobs, talks SMTP, records outcomes, acks after commit."""
