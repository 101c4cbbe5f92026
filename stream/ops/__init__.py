"""What an operator reads: the status document, the HTTP API and the status page."""
