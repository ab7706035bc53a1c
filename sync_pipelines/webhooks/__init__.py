"""The webhook receiver (ASGI): verify on the raw bytes, store each event once in the inbox, answer fast."""
