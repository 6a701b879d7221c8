"""Notifications: what a person is told about final failures, and how it reaches them."""
