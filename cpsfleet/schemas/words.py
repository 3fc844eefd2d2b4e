"""The words people read for the tokens of the wire contract and the data, one table for
every place that shows them: ``agent scan``'s summary, the command's tables, the dashboard,
the notifications.

The data keeps its tokens (``critical``, ``card_present``, ``renew_soon``), which the JSON,
the API and MQTT carry as they are; these are their words in English, marked for the
catalog and translated where they are shown (``_(WORDS[token])``). A token not listed
(a kind of card a newer agent tells) is shown as it comes.
"""

from __future__ import annotations

from cpsfleet.i18n import N_

WORDS = {
    # severities
    "critical": N_("critical"),
    "warning": N_("warning"),
    "info": N_("info"),
    # host presence
    "online": N_("online"),
    "offline": N_("offline"),
    "unknown": N_("unknown"),
    # alerts
    "firing": N_("firing"),
    "resolved": N_("resolved"),
    # card status
    "active": N_("active"),
    "superseded": N_("superseded"),
    "retired": N_("retired"),
    # reader states
    "empty": N_("empty"),
    "card_present": N_("card present"),
    "in_use": N_("in use"),
    "unavailable": N_("unavailable"),
    # certificate roles
    "authentication": N_("authentication"),
    "signature": N_("signature"),
    "technical": N_("technical"),
    # readiness states
    "no_card": N_("no card"),
    "renew_card": N_("card to renew"),
    "renew_soon": N_("card to renew soon"),
    "unblock_pin": N_("PIN to unblock"),
    "ready_ecps": N_("ready with e-CPS"),
    "no_reader": N_("no reader"),
    "install_cryptolib": N_("Cryptolib to install"),
    "install_cps_gestion": N_("CPS Gestion to install"),
    "ready": N_("ready"),
    # the roster's professions
    "doctor": N_("doctor"),
    "nurse": N_("nurse"),
    # card kinds, as the ATR tells them
    "cps3": N_("CPS3"),
    "cps3-contactless": N_("CPS3 (contactless)"),
    "cps4": N_("CPS4"),
    "cps2": N_("CPS2"),
    "vitale1": N_("Vitale 1 card"),
    "vitale2": N_("Vitale 2 card"),
    # events
    "card_inserted": N_("card inserted"),
    "card_removed": N_("card removed"),
    "reader_added": N_("reader added"),
    "reader_removed": N_("reader removed"),
}
# A card's kind "unknown" is a card, not a state.
KIND_WORDS = {**WORDS, "unknown": N_("unknown card")}
