"""A leaky variant of deployserver, checked against the same policy (deployserver/outbound.toml).

Its update check also sends an ``os`` field and the machine's hostname, and its scheduled tasks
phone home to an undocumented analytics host. ``cd examples && python -m pytest leaky`` fails
with those three violations; the default example run does not collect it.
"""
