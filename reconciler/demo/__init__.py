"""`verihook demo`: the five simulators under chaos against real processes, and its verdict."""
