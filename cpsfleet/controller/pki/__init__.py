"""The fleet's mutual TLS: a small CA and Mosquitto's configuration and ACL."""
