"""The Loa agent: runs on a Raspberry Pi beside a loudspeaker cluster's amplifier.

Installs without the server's dependencies (``pip install loa[agent]``): only paho-mqtt and httpx.
`agents.protocol` is the MQTT contract the server imports too.
"""
