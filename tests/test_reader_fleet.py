"""Readers' models across the fleet: stored from the agents' status, shown on the host's page,
and grouped by model on /readers and /api/v1/readers, within the user's sites.

The agent's side (reading the models from sysfs and the CCID bundle) is test_reader_models.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from cpsfleet.controller.db import migrations
from cpsfleet.controller.db.connect import connect
from cpsfleet.controller.db.people import People
from cpsfleet.controller.db.store import Store
from cpsfleet.controller.filters import Filters, fold
from cpsfleet.controller.model import ReaderModel
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web.auth import new_user_token
from cpsfleet.schemas import validate
from tests.test_dashboard import fetch, request, serving
from tests.test_readiness_cli import NOW, grenoble, lyon

OMNIKEY = {
    "usb_vendor_id": "076b",
    "usb_product_id": "3021",
    "manufacturer": "HID Global",
    "product": "OMNIKEY 3x21 Smart Card Reader",
    "driver_version": "1.5.2",
}
GEMALTO = {
    "usb_vendor_id": "08e6",
    "usb_product_id": "3437",
    "manufacturer": "Gemalto",
    "product": "PC Twin Reader",
    "driver_version": None,
}
LYON_HOST, GRENOBLE_HOST = "3f9c1a7be2d04c55", "8d2e44a0c1b94f07"
LYON = "Lyon Part-Dieu"


def with_models(document: dict[str, Any], *models: dict[str, Any] | None) -> dict[str, Any]:
    """``document`` with its readers given ``models`` in order (None: the key absent, as an
    agent older than the models sends)."""
    document = copy.deepcopy(document)
    for reader, model in zip(document["readers"], models, strict=False):
        if model is not None:
            reader["model"] = model
    return validate(document)


def grenoble_with_readers(*models: dict[str, Any] | None) -> dict[str, Any]:
    """The Grenoble host with Lyon's readers and ``models``."""
    document = copy.deepcopy(grenoble())
    document["readers"] = copy.deepcopy(lyon()["readers"])
    return with_models(document, *models)


@pytest.fixture
def fleet(database: str) -> str:
    """Lyon: two OMNIKEYs, a Gemalto and a reader of unknown model; Grenoble: an OMNIKEY with
    another driver, and three readers from an agent that does not tell models."""
    older_driver = OMNIKEY | {"driver_version": "1.4.34"}
    with Store(database) as store:
        store.record_status(with_models(lyon(), OMNIKEY, OMNIKEY, GEMALTO, None), NOW)
        store.record_status(grenoble_with_readers(older_driver), NOW)
    return database


def test_the_store_keeps_each_reader_s_model(fleet: str) -> None:
    with Store(fleet) as store:
        view = store.host_view(LYON_HOST)
    assert view is not None
    models = [reader.model for reader in view.readers]
    assert models[:3] == [ReaderModel(**OMNIKEY), ReaderModel(**OMNIKEY), ReaderModel(**GEMALTO)]
    assert models[3] is None  # not reported: not a model of nulls


def test_a_null_model_and_a_model_of_nulls_are_both_unknown(database: str) -> None:
    nothing = dict.fromkeys(OMNIKEY)
    with Store(database) as store:
        store.record_status(with_models(lyon(), nothing), NOW)
        document = copy.deepcopy(lyon())
        document["readers"][0]["model"] = None
        document["host"]["id"] = "0000000000000001"
        store.record_status(validate(document), NOW)
        rows = webdata.reader_models(store, Filters())
    assert [(row["known"], row["readers"], row["hosts"]) for row in rows] == [(False, 8, 2)]


def test_a_new_model_replaces_the_old_one_at_the_next_inventory(fleet: str) -> None:
    later = with_models(lyon(), GEMALTO, OMNIKEY, GEMALTO, GEMALTO)
    later["scanned_at"] = "2026-12-13T10:00:00Z"
    with Store(fleet) as store:
        store.record_status(later, NOW)
        view = store.host_view(LYON_HOST)
    assert view is not None
    assert [reader.model for reader in view.readers] == [
        ReaderModel(**GEMALTO),
        ReaderModel(**OMNIKEY),
        ReaderModel(**GEMALTO),
        ReaderModel(**GEMALTO),
    ]


def test_readers_are_grouped_by_model_most_used_first_unknown_last(fleet: str) -> None:
    with Store(fleet) as store:
        rows = webdata.reader_models(store, Filters())
    summary = [
        (row["product"], row["readers"], row["hosts"], row["sites"], row["driver_versions"])
        for row in rows
    ]
    assert summary == [
        ("OMNIKEY 3x21 Smart Card Reader", 3, 2, ["Grenoble", LYON], ["1.4.34", "1.5.2"]),
        ("PC Twin Reader", 1, 1, [LYON], []),
        (None, 4, 2, ["Grenoble", LYON], []),
    ]
    omnikey = rows[0]
    assert (omnikey["usb_vendor_id"], omnikey["usb_product_id"]) == ("076b", "3021")
    # Lyon's four readers hold cards (the example's), Grenoble's the same four.
    assert [row["with_card"] for row in rows] == [3, 1, 4]


def test_the_grouping_keeps_to_the_filters_and_the_user_s_sites(fleet: str) -> None:
    with Store(fleet) as store:
        grenoble_only = webdata.reader_models(store, Filters(site="grenoble"))
        lyon_scope = webdata.reader_models(store, Filters(scope=frozenset({fold(LYON)})))
        one_host = webdata.reader_models(store, Filters(host=GRENOBLE_HOST))
        by_text = webdata.reader_models(store, Filters(text="gemalto"))
    assert [(row["product"], row["readers"]) for row in grenoble_only] == [
        ("OMNIKEY 3x21 Smart Card Reader", 1),
        (None, 3),
    ]
    assert [row["sites"] for row in lyon_scope] == [[LYON], [LYON], [LYON]]
    assert one_host == grenoble_only
    assert [row["product"] for row in by_text] == ["PC Twin Reader"]


def test_an_older_database_gains_the_columns_and_keeps_its_readers(database: str) -> None:
    with Store(database) as store:
        store.record_status(lyon(), NOW)
    db = connect(database)
    with db.atomic():
        db.execute("drop index idx_readers_model")
        for column in migrations.READER_MODEL_COLUMNS:
            db.execute(f"alter table readers drop column {column}")
        migrations.set_version(db, migrations.LATEST - 1)
    db.close()
    with Store(database) as store:
        view = store.host_view(LYON_HOST)
        assert view is not None
        assert [reader.model for reader in view.readers] == [None] * 4
        store.record_status(
            with_models(lyon(), OMNIKEY) | {"scanned_at": "2026-12-13T10:00:00Z"}, NOW
        )
        view = store.host_view(LYON_HOST)
    assert view is not None and view.readers[0].model == ReaderModel(**OMNIKEY)


@pytest.fixture
def url(fleet: str) -> Iterator[str]:
    with serving(fleet) as address:
        yield address


def test_the_host_page_and_its_json_tell_each_reader_s_model(url: str) -> None:
    host = fetch(url, f"/api/v1/hosts/{LYON_HOST}").json()
    assert [reader["model"] for reader in host["readers"]] == [OMNIKEY, OMNIKEY, GEMALTO, None]
    page = fetch(url, f"/hosts/{LYON_HOST}").text
    assert "OMNIKEY 3x21 Smart Card Reader" in page and "076b:3021" in page
    assert "CCID driver 1.5.2" in page


def test_the_readers_page_and_api_group_by_model(url: str) -> None:
    rows = fetch(url, "/api/v1/readers").json()
    assert [(row["product"], row["readers"]) for row in rows] == [
        ("OMNIKEY 3x21 Smart Card Reader", 3),
        ("PC Twin Reader", 1),
        (None, 4),
    ]
    assert fetch(url, "/api/v1/readers?site=Grenoble").json()[0]["sites"] == ["Grenoble"]
    page = fetch(url, "/readers").text
    assert 'data-count="readers">8<' in page and 'data-count="rows">2<' in page
    assert "HID Global" in page and "1.4.34, 1.5.2" in page
    assert "Model not reported" in page
    assert 'href="/readers"' in page  # in the navigation


def test_a_site_operator_sees_the_models_of_their_sites_only(url: str, fleet: str) -> None:
    token = new_user_token()
    with Store(fleet) as store:
        people = People(store.database)
        people.add_user("lyon-it", "operator", [LYON], NOW)
        people.add_token("lyon-it", "script", token, NOW, None)
    headers = {"Authorization": f"Bearer {token}"}
    rows = request(url, "/api/v1/readers", headers=headers).json()
    assert {site for row in rows for site in row["sites"]} == {LYON}
    assert sum(row["readers"] for row in rows) == 4
    assert request(url, "/api/v1/readers?site=Grenoble", headers=headers).status == 403
    assert request(url, "/readers").status in (302, 303, 401)  # not without signing in
