"""Automatic recovery: strategies an application registers per error class, tried on a failed
attempt before the retry policy decides, each answering with a typed :class:`RecoveryResult`."""
