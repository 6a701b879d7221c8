"""What is done about an error: its retry policy, backoff, classification of foreign exceptions,
the facts read off them, and the one resolver that turns (error, attempt) into a decision."""
