"""Real servers on loopback for tests: DNS, SMTP, and TLS certificates."""
