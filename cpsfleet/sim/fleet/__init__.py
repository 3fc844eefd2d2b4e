"""A synthetic fleet: many workstations, their readers, cards and Cryptolib, played on a broker.

``model`` draws the fleet from a seed, ``documents`` gives each host's status, events and
presence as the agent publishes them, ``player`` plays the hosts' agents (birth, reports with
the odd card swapped, goodbye) into a ``connection``: one MQTT 5 connection for every agent.
The reconnect storm (``cpsfleet.sim.storm``) plays the same fleet one connection per agent.
"""


class FleetError(Exception):
    """The fleet cannot be generated or played; the message says what to change."""
