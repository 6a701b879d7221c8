"""Runbooks generated from the fleet's own history: per error type, what it is, what caused it
here, how to diagnose it, what actually resolved it here, how to prevent it, who is told."""
