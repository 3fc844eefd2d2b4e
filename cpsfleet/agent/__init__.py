"""The cpsfleet agent: inventories PC/SC readers, Cryptolib CPS and CPS cards on a workstation."""

__version__ = "0.1.0"
