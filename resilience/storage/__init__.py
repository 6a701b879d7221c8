"""Redis plumbing shared by every building block: the key space, Lua scripts, connections,
clocks (injected and Redis server time), persistence and the fleet epoch."""
