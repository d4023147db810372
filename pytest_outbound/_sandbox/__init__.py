"""The sandbox (SPEC §8): a command, or a whole pytest run, in a private network namespace whose
only road out is the plugin's gateway (HTTP CONNECT, HTTP proxy, SOCKS5) and DNS responder.

Linux only (user, network and mount namespaces). Opt-in: ``outbound_sandbox = on`` /
``--outbound-sandbox``, or ``python -m pytest_outbound sandbox -- COMMAND``. Nothing here is
imported unless it is asked for.

- ``_namespace``: the namespace itself, and the command started in it;
- ``_gateway``: the gateway and the DNS responder, served outside;
- ``_tun``: what is sent straight to an address (the TUN device), judged and refused;
- ``_programs``: which program made a connection or a lookup;
- ``_judging``: what they saw, as records judged by a ``Guard`` (client ``gateway``, ``dns``);
- ``_control`` and ``_session``: the pytest sessions inside, which judge;
- ``_run``: the wrapper command and pytest's run again inside;
- ``_dns``: DNS messages.
"""
