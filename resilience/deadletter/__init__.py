"""Dead letters: the store of tasks that failed for good, quarantined messages, and replay that
never publishes twice."""
