"""``cpsfleet controller`` and ``cpsfleet pki``: parse, call the controller's parts, print."""
