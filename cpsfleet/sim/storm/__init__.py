"""A reconnect storm: every agent of a synthetic fleet on its own MQTT connection, back at once.

Each agent connects as the real one (``agent/mqtt.py``): client id ``cpsfleet-agent-<host id>``,
MQTT 5, keepalive 30 s, a session that outlives the connection by the Will Delay, a retained
QoS 1 ``offline`` Last Will on its presence topic, and clean start false, so that a reconnection
within the Will Delay takes the session back without publishing the Will. Once connected it
publishes ``online`` and a fresh status (retained, QoS 1, the status with the next ``seq``).
The storm lasts from the first CONNECT to the last PUBACK.

``play`` plays it (``play_storm``) with the ``settings`` it is given, and reports in
``results``; ``pool`` runs the worker processes, each a ``worker`` speaking the ``packets`` of
its agents; ``wills`` counts the offline Wills the broker publishes.

Ten thousand connections do not get ten thousand threads: a few worker processes (one per core
by default) each drive their share from one selector loop. The agents speak the few packets
they need from bytes made before the storm, not through paho: paho spends ~0.7 ms of CPU per
agent (MQTT 5 properties objects for every packet, packets read a byte at a time), and on a
2-core machine the load generator, not the broker, set the pace. paho watches the Wills.

Each worker raises its open-file limit to the hard limit; the broker needs one file descriptor
per agent too (``ulimit -n`` of whatever starts Mosquitto, ``LimitNOFILE=`` of its unit) and
``max_connections -1``. Mosquitto listens with a backlog of 100: a storm overflows its accept
queue, and the kernel drops SYNs that the agents send again 1 s, 3 s, 7 s later
(``nstat TcpExtListenOverflows``), as a real fleet coming back at once would.
"""
