"""What the error history says: message templates, time-of-day and day-of-week clusters,
sequences, correlated error types, and the probability of an error in the next minutes."""
