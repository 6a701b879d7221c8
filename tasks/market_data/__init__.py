"""Quotes that keep flowing when the primary provider fails: a second provider and the last good
quote of each symbol cached fleet-wide, never used beyond a maximum age."""
