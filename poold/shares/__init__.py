"""Share difficulty, validation verdicts and the durable share log."""
