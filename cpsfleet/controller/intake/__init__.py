"""What comes into the controller: the fleet's MQTT documents (the receiving process)
and the roster file."""
