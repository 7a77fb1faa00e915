"""ipm-cds serve: the real server on uvicorn, on a loopback port, exercised over HTTP with httpx.

Discovery, patient-view, order-select, order-sign and feedback; the 400, 404, 412 and 413 answers
(each an OperationOutcome); the JWT checks of the CDS Hooks security model. Every card returned is
validated against the JSON Schema of the CDS Hooks card (tests/fixtures/cds_hooks_card.schema.json).
Loopback only: the servers listen on 127.0.0.1, never on any other address.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

import ipm_cds
from ipm_cds.interop.cds_hooks import CARD_EXTENSION, patient_view_cards
from ipm_cds.interop.fhir import prefetch_from_bundle, prefetch_templates, read_prefetch
from ipm_cds.serving.service import SERVICES, ServiceConfig, TrustedIssuer, create_app, load_issuers

AS_OF = date(2025, 6, 2)
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "fhir"
SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "cds_hooks_card.schema.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
ISSUER = "https://ehr.example.org"
KID = "ehr-key-1"
MAX_BYTES = 1_000_000
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    private = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=KID, alg="ES384", use="sig")
    return {"private": private, "jwks": {"keys": [jwk]}}


class Server:
    def __init__(self, base: str, feedback_log: Path, decision_log: Path, ruleset: ipm_cds.Ruleset) -> None:
        self.base, self.feedback_log, self.decision_log, self.ruleset = base, feedback_log, decision_log, ruleset


def listening() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, see service
    sock.bind((LOOPBACK, 0))
    return sock, sock.getsockname()[1]


@contextlib.contextmanager
def running(config: ServiceConfig, sock: socket.socket, load: Literal["now", "background"] = "now") -> Iterator[Any]:
    """The app of ``config`` served by uvicorn on ``sock`` in a thread; yields the app."""
    app = create_app(config, load=load)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    yield app
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(keys: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    sock, port = listening()
    base = f"http://{LOOPBACK}:{port}"
    log = tmp_path_factory.mktemp("service") / "feedback.jsonl"
    decisions = log.with_name("decisions.jsonl")
    config = ServiceConfig(
        as_of=AS_OF,
        feedback_log=log,
        decision_log=decisions,
        max_request_bytes=MAX_BYTES,
        public_url=base,
        bind=(LOOPBACK, port),
        issuers=(TrustedIssuer(ISSUER, keys["jwks"], jku=(f"{ISSUER}/jwks.json",)),),
    )
    with running(config, sock) as app:
        yield Server(base, log, decisions, app.state.ruleset)


def token(
    keys: dict[str, Any],
    audience: str,
    *,
    claims: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    key: Any = None,
    algorithm: str = "ES384",
) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4())}
    payload.update(claims or {})
    header = {"kid": KID, "typ": "JWT", **(headers or {})}
    return jwt.encode(payload, key if key is not None else keys["private"], algorithm=algorithm, headers=header)


class Client:
    """httpx against the server, with a fresh signed JWT on every call (aud = the endpoint's URL)."""

    def __init__(self, server: Server, keys: dict[str, Any]) -> None:
        self.server, self.keys = server, keys
        self.http = httpx.Client(base_url=server.base, timeout=60, trust_env=False)

    def auth(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.keys, self.server.base + path)}"}

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path, headers=self.auth(path))

    def post(self, path: str, body: Any = None, *, content: bytes | None = None, **kw: Any) -> httpx.Response:
        headers = {**self.auth(path), **kw.pop("headers", {})}
        if content is not None:
            return self.http.post(path, content=content, headers={"Content-Type": "application/json", **headers})
        return self.http.post(path, json=body, headers=headers)


@pytest.fixture(scope="module")
def client(server: Server, keys: dict[str, Any]) -> Iterator[Client]:
    c = Client(server, keys)
    yield c
    c.http.close()


def example(name: str) -> tuple[dict[str, Any], str]:
    data = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    pid = next(e["resource"]["id"] for e in data["entry"] if e["resource"]["resourceType"] == "Patient")
    return data, pid


def hook_request(server: Server, name: str, hook: str = "patient-view", **context: Any) -> dict[str, Any]:
    data, pid = example(name)
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": pid, **context},
        "prefetch": prefetch_from_bundle(data, prefetch_templates(server.ruleset), pid),
    }


def assert_cards(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"cards"}
    for card in body["cards"]:
        errors = list(VALIDATOR.iter_errors(card))
        assert not errors, f"{card['summary']}: {[e.message for e in errors]}"
    return list(body["cards"])


def assert_outcome(response: httpx.Response, status: int, text: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"]
    assert all(i["severity"] == "error" for i in outcome["issue"])
    assert text in json.dumps(outcome)
    return dict(outcome)


def draft_orders(pid: str, *codes: tuple[str, str, str | None]) -> dict[str, Any]:
    entries = []
    for rid, code, region in codes:
        system = (
            "http://www.ama-assn.org/go/cpt"
            if code.isdigit()
            else "https://ipm-cds.invalid/fhir/CodeSystem/intervention"
        )
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": rid,
            "status": "draft",
            "intent": "order",
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
        }
        if region:
            resource["bodySite"] = [
                {"coding": [{"system": "https://ipm-cds.invalid/fhir/CodeSystem/body-region", "code": region}]}
            ]
        entries.append({"resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


# -- discovery and hooks ---------------------------------------------------------------------------------


def test_discovery(client: Client) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert set(services) == set(SERVICES)
    assert {s["hook"] for s in services.values()} == {"patient-view", "order-select", "order-sign"}
    templates = prefetch_templates(client.server.ruleset)
    for service in services.values():
        assert service["description"] and service["title"]
        assert service["prefetch"] == templates


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.json")))
def test_patient_view_for_every_example(client: Client, name: str, durable: ipm_cds.Engine) -> None:
    request = hook_request(client.server, name)
    cards = assert_cards(client.post("/cds-services/ipm-cds-patient-view", request))
    assert cards
    # the same cards as the library gives for the same hook instance
    mapping = read_prefetch(
        request["prefetch"], ruleset=client.server.ruleset, patient_id=request["context"]["patientId"]
    )
    expected = patient_view_cards(
        durable.evaluate(mapping.patient, as_of=AS_OF),
        ruleset=client.server.ruleset,
        hook_instance=request["hookInstance"],
        unmapped=mapping.unmapped,
        patient_reference=mapping.patient_reference,
    )
    assert cards == json.loads(json.dumps(expected))


def _order_card(cards: list[dict[str, Any]], order: str) -> dict[str, Any]:
    (card,) = [c for c in cards if c["extension"][CARD_EXTENSION].get("order") == order]
    assert card["extension"][CARD_EXTENSION]["kind"] == "requested"
    return card


def test_order_select_answers_from_the_selected_orders_verdict(client: Client) -> None:
    _, pid = example("facet_rfa")
    orders = draft_orders(
        pid, ("rfa", "64635", "lumbar"), ("tf", "64483", None), ("cf", "64633", None), ("lab", "85610", None)
    )
    request = hook_request(
        client.server, "facet_rfa", "order-select", selections=["ServiceRequest/rfa"], draftOrders=orders
    )
    cards = assert_cards(client.post("/cds-services/ipm-cds-order-select", request))
    card = _order_card(cards, "ServiceRequest/rfa")  # one card for the selected order, none for the others
    assert len(cards) == 1
    facts = card["extension"][CARD_EXTENSION]
    # the example records no pain course: the post-procedure infection red flag waits for it
    assert (facts["verdict"], facts["missing"]) == ("cannot_tell", ["pain.worsening"])
    assert card["indicator"] == "warning" and "cannot tell yet: record pain.worsening" in card["summary"]
    assert "**Antithrombotic** (prescriber approval): Apixaban" in card["detail"]  # the hold, for this procedure

    # 64483 without bodySite or levels: "lumbar or sacral", no region guessed; no indication at any region
    request["context"]["selections"] = ["ServiceRequest/tf"]
    card = _order_card(assert_cards(client.post("/cds-services/ipm-cds-order-select", request)), "ServiceRequest/tf")
    assert card["extension"][CARD_EXTENSION]["verdict"] == "not_appropriate"
    assert "esi.approach.transforaminal@" in card["detail"]  # the criterion and rule that are not met
    assert card["suggestions"][0]["actions"][0] == {
        "type": "delete",
        "description": card["suggestions"][0]["actions"][0]["description"],
        "resourceId": "ServiceRequest/tf",
    }

    # 64633 is "cervical or thoracic": the RFA is indicated at the lumbar region only, so the region decides
    request["context"]["selections"] = ["ServiceRequest/cf"]
    card = _order_card(assert_cards(client.post("/cds-services/ipm-cds-order-select", request)), "ServiceRequest/cf")
    facts = card["extension"][CARD_EXTENSION]
    assert facts["verdict"] == "cannot_tell" and "requested.region" in facts["missing"]
    assert "requested.region" in card["summary"]

    request["context"]["selections"] = ["ServiceRequest/lab"]  # not one of ours: no cards
    assert assert_cards(client.post("/cds-services/ipm-cds-order-select", request)) == []


def test_one_evaluation_per_hook_call(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """An order hook gets the verdicts of every order, with their why-not, from one run of the engine."""
    from ipm_cds.engine.facade import Engine

    runs: list[str] = []
    real = Engine._run

    def counted(self: Engine, *args: Any, **kwargs: Any) -> Any:
        runs.append("run")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "_run", counted)
    _, pid = example("facet_rfa")
    orders = draft_orders(pid, ("rfa", "64635", "lumbar"), ("tf", "64483", None))
    for hook, context in (
        ("order-select", {"selections": ["ServiceRequest/tf"], "draftOrders": orders}),
        ("order-sign", {"draftOrders": orders}),
        ("patient-view", {}),
    ):
        runs.clear()
        request = hook_request(client.server, "facet_rfa", hook, **context)
        cards = assert_cards(client.post(f"/cds-services/ipm-cds-{hook}", request))
        assert runs == ["run"], hook
        if hook != "patient-view":
            ordered = {c["extension"][CARD_EXTENSION].get("order") for c in cards} - {None}
            assert ordered == (
                {"ServiceRequest/tf"} if hook == "order-select" else {f"ServiceRequest/{o}" for o in ("rfa", "tf")}
            )


def test_order_sign_with_a_red_flag(client: Client) -> None:
    _, pid = example("cauda_equina")
    request = hook_request(
        client.server, "cauda_equina", "order-sign", draftOrders=draft_orders(pid, ("r", "facet_rfa", None))
    )
    cards = assert_cards(client.post("/cds-services/ipm-cds-order-sign", request))
    critical = [c for c in cards if c["indicator"] == "critical"]
    assert len(critical) >= 2  # the red-flag card (one per syndrome) and the order's own
    # the local facet_rfa code does not fix the region, yet the red flag blocks the order whatever its region
    card = _order_card(cards, "ServiceRequest/r")
    facts = card["extension"][CARD_EXTENSION]
    assert (facts["verdict"], facts["blocking"], card["indicator"]) == ("not_appropriate", True, "critical")
    assert "**Red flag**" in card["detail"]
    assert any(
        s["actions"][0]["resourceId"] == "ServiceRequest/r"
        for c in critical
        for s in c.get("suggestions", [])
        if s["actions"][0]["type"] == "delete"
    )


def test_order_sign_with_draft_orders_that_are_not_fhir_is_answered_400(client: Client) -> None:
    _, pid = example("facet_rfa")
    orders = draft_orders(pid, ("rfa", "64635", "lumbar"))
    orders["entry"][0]["resource"]["status"] = 7  # not a FHIR code
    request = hook_request(client.server, "facet_rfa", "order-sign", draftOrders=orders)
    assert_outcome(client.post("/cds-services/ipm-cds-order-sign", request), 400, "draftOrders")


# -- feedback --------------------------------------------------------------------------------------------


def test_feedback_is_recorded_in_the_decision_log(client: Client) -> None:
    logged = client.server.decision_log.read_text().splitlines() if client.server.decision_log.exists() else []
    cards = assert_cards(client.post("/cds-services/ipm-cds-patient-view", hook_request(client.server, "cauda_equina")))
    (decision,) = [json.loads(line) for line in client.server.decision_log.read_text().splitlines()[len(logged) :]]
    assert decision["conclusions"]["alerts"] == ["red_flag.cauda_equina"] and "patient_id" not in decision
    # ODI above 40: multidisciplinary rehabilitation (which includes exercise), not physical therapy as well
    assert decision["conclusions"]["deferred_referrals"] == ["multidisciplinary_rehabilitation"]
    red = next(c for c in cards if c["indicator"] == "critical")
    # the missing-data card (a warning: the post-procedure infection check waits for the pain course)
    other = next(c for c in cards if c["indicator"] != "critical")
    feedback = {
        "feedback": [
            {
                "card": red["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": red["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": "2025-06-02T10:05:31Z",
            },
            {
                "card": other["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": other["overrideReasons"][0],
                    "userComment": "Mr Example declined; see note",
                },
                "outcomeTimestamp": "2025-06-02T10:06:00Z",
            },
        ]
    }
    before = client.server.feedback_log.read_text().splitlines() if client.server.feedback_log.exists() else []
    response = client.post("/cds-services/ipm-cds-patient-view/feedback", feedback)
    assert response.status_code == 200 and response.json() == {}
    records = [json.loads(line) for line in client.server.feedback_log.read_text().splitlines()[len(before) :]]
    accepted, overridden = records
    # each feedback record names the decision behind its card: the two logs join on decision_id
    assert accepted["card_facts"]["decision_id"] == overridden["card_facts"]["decision_id"] == decision["decision_id"]
    assert accepted["outcome"] == "accepted" and accepted["card_facts"]["rule"] == "red_flag.cauda_equina@1.1.0"
    assert accepted["card_facts"]["indicator"] == "critical" and accepted["suggestions_known"] is True
    assert overridden["overrideReason"]["reason"]["code"] == other["overrideReasons"][0]["code"]
    assert overridden["overrideReason"] == {**overridden["overrideReason"], "userComment_present": True}
    assert "Mr Example" not in client.server.feedback_log.read_text()  # free text is patient data


@pytest.mark.parametrize(
    "item",
    [
        {"card": "x", "outcome": "accepted", "outcomeTimestamp": "2025-06-02T10:05:31Z"},
        {"card": "x", "outcome": "ignored", "outcomeTimestamp": "2025-06-02T10:05:31Z"},
        {"card": "x", "outcome": "overridden", "overrideReason": {}, "outcomeTimestamp": "2025-06-02T10:05:31Z"},
        {"card": "x", "outcome": "overridden"},
    ],
)
def test_invalid_feedback_is_400(client: Client, item: dict[str, Any]) -> None:
    assert_outcome(client.post("/cds-services/ipm-cds-patient-view/feedback", {"feedback": [item]}), 400)


# -- 400, 404, 412, 413 ----------------------------------------------------------------------------------


def test_malformed_requests_are_400_with_an_operation_outcome(client: Client) -> None:
    path = "/cds-services/ipm-cds-patient-view"
    assert_outcome(client.post(path, content=b"{not json"), 400, "not JSON")
    good = hook_request(client.server, "sij")
    for broken, text in [
        ({k: v for k, v in good.items() if k != "hookInstance"}, "hookInstance"),
        ({**good, "hookInstance": "not-a-uuid"}, "UUID"),
        ({**good, "hook": "order-sign"}, "answers patient-view"),
        ({**good, "context": {"userId": "Practitioner/1"}}, "context.patientId"),
        ({**good, "surprise": 1}, "surprise"),
        (
            {
                **good,
                "fhirAuthorization": {
                    "access_token": "t",
                    "token_type": "Bearer",
                    "expires_in": 60,
                    "scope": "s",
                    "subject": "c",
                },
            },
            "fhirServer",
        ),
    ]:
        assert_outcome(client.post(path, broken), 400, text)
    select = hook_request(client.server, "sij", "order-select", draftOrders=draft_orders("fhir-sij"))
    assert_outcome(client.post("/cds-services/ipm-cds-order-select", select), 400, "selections")


def test_invalid_fhir_in_the_prefetch_is_400_naming_the_resource(client: Client) -> None:
    request = hook_request(client.server, "facet_rfa")
    request["prefetch"]["conditions"]["entry"][0]["resource"]["bogus"] = True
    assert_outcome(client.post("/cds-services/ipm-cds-patient-view", request), 400, "bogus")
    request = hook_request(client.server, "facet_rfa")
    request["context"]["patientId"] = "someone-else"
    assert_outcome(client.post("/cds-services/ipm-cds-patient-view", request), 400, "not Patient/someone-else")
    request = hook_request(client.server, "facet_rfa")
    nrs = next(
        e["resource"]
        for e in request["prefetch"]["painObservations"]["entry"]
        if e["resource"].get("valueInteger") == 7
    )
    nrs["valueInteger"] = 11
    assert_outcome(client.post("/cds-services/ipm-cds-patient-view", request), 400, f"Observation/{nrs['id']}")


def test_a_placeholder_birth_date_is_400_naming_the_patient_and_the_field(client: Client) -> None:
    request = hook_request(client.server, "facet_rfa")
    request["prefetch"]["patient"]["birthDate"] = "1900-01-01"
    pid = request["context"]["patientId"]
    outcome = assert_outcome(
        client.post("/cds-services/ipm-cds-patient-view", request), 400, f"Patient/{pid}: demographics.birth_date"
    )
    assert "age 125 at 2025-06-02, outside 0–120" in json.dumps(outcome, ensure_ascii=False)


def test_a_long_record_is_answered_not_400_and_what_was_left_out_is_on_a_card(client: Client) -> None:
    """101 INRs (tests/fixtures/inr101.patient-view.json) were 400 "not valid FHIR R4": the model holds 100."""
    repro = json.loads((Path(__file__).parent / "fixtures" / "inr101.patient-view.json").read_text(encoding="utf-8"))
    pid = repro["context"]["patientId"]
    patient = repro["prefetch"]["patient"]
    resources = [patient] + [e["resource"] for v in repro["prefetch"].values() if v for e in v.get("entry", [])]
    data = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    # answered by a client that ignores _sort and _count: every INR is sent
    templates = {
        k: re.sub(r"&_sort=[^&]*|&_count=\d+", "", t) for k, t in prefetch_templates(client.server.ruleset).items()
    }
    request = {**repro, "hookInstance": str(uuid.uuid4()), "prefetch": prefetch_from_bundle(data, templates, pid)}
    assert sum(len(v.get("entry", [])) for v in request["prefetch"].values() if v) == len(resources) - 1
    cards = assert_cards(client.post("/cds-services/ipm-cds-patient-view", request))
    (unmapped,) = [c for c in cards if c["extension"][CARD_EXTENSION]["kind"] == "unmapped"]
    assert "older left out" in unmapped["detail"] and "1 of 101 inr labs left out as older" in unmapped["detail"]


def test_the_repro_request_as_sent_with_the_combined_keys_of_old_is_answered(client: Client) -> None:
    """The 101-INR request exactly as a client built from the earlier discovery sends it (one 'labs' key for all
    labs, one 'screenings' key): answered, the oldest INR left out and reported, never 400 or 412."""
    repro = json.loads((Path(__file__).parent / "fixtures" / "inr101.patient-view.json").read_text(encoding="utf-8"))
    assert "labs" in repro["prefetch"] and "labsInr" not in repro["prefetch"]
    cards = assert_cards(
        client.post("/cds-services/ipm-cds-patient-view", {**repro, "hookInstance": str(uuid.uuid4())})
    )
    (unmapped,) = [c for c in cards if c["extension"][CARD_EXTENSION]["kind"] == "unmapped"]
    assert "1 of 101 inr labs left out as older" in unmapped["detail"]


def test_missing_required_prefetch_is_412(client: Client) -> None:
    request = hook_request(client.server, "facet_rfa")
    del request["prefetch"]["medicationRequests"]
    request["prefetch"]["labsInr"] = None
    outcome = assert_outcome(client.post("/cds-services/ipm-cds-patient-view", request), 412, "medicationRequests")
    assert "labsInr" in json.dumps(outcome) and "fhirServer" in json.dumps(outcome)
    request.pop("prefetch")
    assert_outcome(client.post("/cds-services/ipm-cds-patient-view", request), 412, "patient")


def test_unknown_service_is_404(client: Client) -> None:
    assert_outcome(client.post("/cds-services/nope", {}), 404, "nope")
    assert_outcome(client.post("/cds-services/nope/feedback", {}), 404)


def test_request_size_is_bounded(client: Client) -> None:
    request = hook_request(client.server, "sij")
    request["extension"] = {"padding": "x" * (MAX_BYTES + 1)}
    assert_outcome(client.post("/cds-services/ipm-cds-patient-view", request), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"padding": "'
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    path = "/cds-services/ipm-cds-patient-view"
    response = client.http.post(
        path, content=chunks(), headers={**client.auth(path), "Content-Type": "application/json"}
    )
    assert_outcome(response, 413)


def test_hostile_json_bodies_are_400_with_messages_for_the_client(client: Client) -> None:
    path = "/cds-services/ipm-cds-patient-view"
    deep = client.post(path, content=b'{"context": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert_outcome(deep, 400, "nested too deeply at line 1 column")
    big = client.post(path, content=b'{"hook": "patient-view", "context": {"n": ' + b"9" * 5000 + b"}}")
    outcome = assert_outcome(big, 400, "number too large at line 1 column")
    assert "set_int_max_str_digits" not in json.dumps(outcome)
    feedback = client.post(f"{path}/feedback", content=b'{"feedback": [' * 50_000 + b"]}" * 50_000)
    assert_outcome(feedback, 400, "nested too deeply")
    assert_outcome(client.post(path, content=b'{"a": "\\ud800"}'), 400, "not JSON")  # a lone surrogate
    # and the service goes on answering
    assert assert_cards(client.post(path, hook_request(client.server, "sij")))


def test_a_byte_order_mark_before_the_json_is_accepted(client: Client) -> None:
    body = json.dumps(hook_request(client.server, "sij")).encode()
    assert assert_cards(client.post("/cds-services/ipm-cds-patient-view", content=b"\xef\xbb\xbf" + body))


# -- without issuers: Host and Content-Type ------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No JWT verification: listening on loopback, public URL https://cds.example.org (a proxy's name)."""
    sock, port = listening()
    log = tmp_path_factory.mktemp("open") / "feedback.jsonl"
    config = ServiceConfig(
        as_of=AS_OF,
        feedback_log=log,
        max_request_bytes=MAX_BYTES,
        public_url="https://cds.example.org",
        bind=(LOOPBACK, port),
    )
    with running(config, sock) as app:
        yield Server(f"http://{LOOPBACK}:{port}", log, log.with_name("none.jsonl"), app.state.ruleset)


FEEDBACK = {"feedback": [{"card": "c-1", "outcome": "overridden", "overrideReason": {"userComment": "no"},
                          "outcomeTimestamp": "2025-06-02T10:05:31Z"}]}  # fmt: skip


def logged(server: Server) -> list[str]:
    return server.feedback_log.read_text(encoding="utf-8").splitlines() if server.feedback_log.exists() else []


def test_without_issuers_a_post_must_say_application_json(open_server: Server) -> None:
    path = "/cds-services/ipm-cds-patient-view/feedback"
    body = json.dumps(FEEDBACK).encode()
    with httpx.Client(base_url=open_server.base, timeout=60, trust_env=False) as http:
        before = logged(open_server)
        # what a page of another site can send without a preflight: text/plain, a form, nothing
        for content_type in ("text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", None):
            headers = {"Content-Type": content_type} if content_type else {}
            assert_outcome(http.post(path, content=body, headers=headers), 415, "application/json")
        assert_outcome(http.post("/cds-services/ipm-cds-patient-view", content=body), 415)
        assert logged(open_server) == before  # nothing of it reached the feedback log
        response = http.post(path, content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"})
        assert response.status_code == 200, response.text
        assert len(logged(open_server)) == len(before) + 1
        assert http.get("/cds-services").status_code == 200  # a GET has no body to type


def test_without_issuers_the_host_must_name_the_service(open_server: Server) -> None:
    port = int(open_server.base.rsplit(":", 1)[1])
    request = hook_request(open_server, "sij")
    accepted = [f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}",
                "cds.example.org", "cds.example.org:443"]  # fmt: skip
    refused = ["evil.example", f"evil.example:{port}", f"localhost:{port + 1}", "127.0.0.1", "localhost",
               f"cds.example.org:{port}", "cds.example.org:80", f"127.0.0.2:{port}", f"evil@127.0.0.1:{port}",
               f"127.0.0.1:{port}/x", ""]  # fmt: skip
    with httpx.Client(base_url=open_server.base, timeout=60, trust_env=False) as http:
        for host in accepted:
            assert http.get("/cds-services", headers={"Host": host}).status_code == 200, host
            assert_cards(http.post("/cds-services/ipm-cds-patient-view", json=request, headers={"Host": host}))
        for host in refused:  # a page of another site whose name now leads here (DNS rebinding) reads nothing
            response = http.get("/cds-services", headers={"Host": host})
            assert response.status_code in (400, 421), host
            assert response.json()["issue"][0]["code"] == "security", host
            assert "services" not in response.text, host
            response = http.post("/cds-services/ipm-cds-patient-view", json=request, headers={"Host": host})
            assert response.status_code in (400, 421) and "cards" not in response.text, host
        assert http.get("/cds-services", headers={"Host": "evil.example"}).status_code == 421
    with socket.create_connection((LOOPBACK, port), timeout=60) as raw:  # HTTP/1.0 may leave Host out
        raw.sendall(b"GET /cds-services HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"one Host header" in answer


def test_with_issuers_the_jwt_guards_every_call_instead(client: Client, keys: dict[str, Any]) -> None:
    """With --issuers a call needs a token whose aud is the endpoint's URL, which no page of another site can
    obtain: without one, a cross-site text/plain POST is 401 and nothing is logged. A proxy may rewrite Host."""
    path = "/cds-services/ipm-cds-patient-view/feedback"
    before = logged(client.server)
    response = client.http.post(path, content=json.dumps(FEEDBACK).encode(), headers={"Content-Type": "text/plain"})
    assert_outcome(response, 401)
    assert logged(client.server) == before
    assert client.http.get("/cds-services", headers={"Host": "evil.example"}).status_code == 401
    proxied = {**client.auth("/cds-services"), "Host": "internal-name:8080"}
    assert client.http.get("/cds-services", headers=proxied).status_code == 200


# -- JWT -------------------------------------------------------------------------------------------------


def test_requests_without_a_valid_jwt_are_401(client: Client, keys: dict[str, Any]) -> None:
    base = client.server.base
    path = "/cds-services"
    aud = base + path
    other_ec = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    cases = {
        "no token": None,
        "not a JWT": "abc.def",
        "wrong audience": token(keys, base + "/cds-services/ipm-cds-patient-view"),
        "expired": token(keys, aud, claims={"iat": now - 400, "exp": now - 200}),
        "lifetime too long": token(keys, aud, claims={"exp": now + 3600}),
        "untrusted issuer": token(keys, aud, claims={"iss": "https://evil.example.org"}),
        "wrong key": token(keys, aud, key=other_ec),
        "unknown kid": token(keys, aud, headers={"kid": "other"}),
        "HMAC": jwt.encode(
            {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 60, "jti": "h"},
            "secret" * 6,
            algorithm="HS256",
            headers={"kid": KID},
        ),
        "alg none": jwt.encode(
            {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 60, "jti": "n"},
            None,
            algorithm="none",
            headers={"kid": KID},
        ),
        "key of another type": token(keys, aud, key=rsa_key, algorithm="RS384"),
        "jku not allowed": token(keys, aud, headers={"jku": "https://evil.example.org/jwks.json"}),
        "no jti": token(keys, aud, claims={"jti": None}),
        "typ not JWT": token(keys, aud, headers={"typ": "at+jwt"}),
        "exp = 10**400": token(keys, aud, claims={"exp": 10**400}),
        "iat = 10**400": token(keys, aud, claims={"iat": 10**400, "exp": 10**400 + 60}),
        "exp infinite": token(keys, aud, claims={"exp": float("inf")}),
        "exp a string": token(keys, aud, claims={"exp": str(now + 60)}),
        "claims nested 2,000 deep": unsigned({"kid": KID, "typ": "JWT", "alg": "ES384"}, "[" * 2000 + "]" * 2000),
        "a 5,000-digit number in the claims": unsigned({"kid": KID, "typ": "JWT", "alg": "ES384"}, "9" * 5000),
        "header not an object": unsigned([1], "{}"),
    }
    for name, value in cases.items():
        headers = {"Authorization": f"Bearer {value}"} if value else {}
        response = client.http.get(path, headers=headers)
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        assert response.json()["issue"][0]["code"] == "security", name
        assert "set_int_max_str_digits" not in response.text, name
    allowed_jku = token(keys, aud, headers={"jku": f"{ISSUER}/jwks.json"})
    assert client.http.get(path, headers={"Authorization": f"Bearer {allowed_jku}"}).status_code == 200


def unsigned(header: Any, claims: str) -> str:
    """A token of ``header`` and the raw JSON text ``claims``, with a signature of no key."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(json.dumps(header).encode())}.{part(claims.encode())}.{part(b'not a signature')}"


def test_a_replayed_jwt_is_refused(client: Client, keys: dict[str, Any]) -> None:
    path = "/cds-services"
    headers = {"Authorization": f"Bearer {token(keys, client.server.base + path)}"}
    assert client.http.get(path, headers=headers).status_code == 200
    assert client.http.get(path, headers=headers).status_code == 401


def test_hook_calls_need_the_jwt_too(client: Client, keys: dict[str, Any]) -> None:
    path = "/cds-services/ipm-cds-patient-view"
    request = hook_request(client.server, "sij")
    assert client.http.post(path, json=request).status_code == 401
    discovery_token = token(keys, client.server.base + "/cds-services")  # aud of another endpoint
    assert (
        client.http.post(path, json=request, headers={"Authorization": f"Bearer {discovery_token}"}).status_code == 401
    )


# -- logging and the command line ---------------------------------------------------------------------


def test_no_patient_data_in_the_logs(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    request = hook_request(client.server, "opioids")
    assert_cards(client.post("/cds-services/ipm-cds-patient-view", request))
    request["prefetch"]["conditions"]["entry"][0]["resource"]["bogus"] = True
    client.post("/cds-services/ipm-cds-patient-view", request)
    text = caplog.text
    assert "ipm-cds-patient-view" in text  # the service logs its calls ...
    for secret in ("fhir-opioids", "1979-01-05", "oxycodone", "bogus"):  # ... but never the patient
        assert secret not in text


def test_load_issuers(tmp_path: Path, keys: dict[str, Any]) -> None:
    (tmp_path / "ehr.jwks.json").write_text(json.dumps(keys["jwks"]))
    (tmp_path / "issuers.yaml").write_text(
        f"issuers:\n  - iss: {ISSUER}\n    jwks_file: ehr.jwks.json\n    jku: [{ISSUER}/jwks.json]\n"
    )
    (issuer,) = load_issuers(tmp_path / "issuers.yaml")
    assert issuer.iss == ISSUER and issuer.jku == (f"{ISSUER}/jwks.json",) and issuer.jwks == keys["jwks"]
    private = dict(keys["jwks"]["keys"][0], d="secret")
    (tmp_path / "bad.yaml").write_text(json.dumps({"issuers": [{"iss": ISSUER, "jwks": {"keys": [private]}}]}))
    with pytest.raises(ipm_cds.ConfigurationError, match="public asymmetric keys only"):
        load_issuers(tmp_path / "bad.yaml")


def test_ipm_cds_serve_starts_on_loopback_and_answers(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipm_cds",
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--as-of",
            "2025-06-02",
            "--backend",
            "python",
            "--feedback-log",
            str(tmp_path / "feedback.jsonl"),
            "--log-format",
            "json",
            "--openapi",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "ipm-cds serve did not start"
            time.sleep(0.05)
        base = f"http://{LOOPBACK}:{int(port_file.read_text())}"
        with httpx.Client(base_url=base, timeout=30, trust_env=False) as http:
            while True:
                try:
                    response = http.get("/cds-services")
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            assert response.status_code == 200 and len(response.json()["services"]) == 3
            assert http.get("/readyz").json()["status"] == "ready"
            assert http.get("/openapi.json").status_code == 200  # --openapi
            assert "ipm_cds_http_requests_total" in http.get("/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.stdout is not None
    lines = [json.loads(line) for line in proc.stdout.read().decode().splitlines() if line.strip()]  # all JSON
    requests = [line for line in lines if line["logger"] == "ipm_cds.serving.observability"]
    assert [r["route"] for r in requests] == ["/cds-services", "/readyz", "/openapi.json", "/metrics"]
    assert all(r["status"] == 200 and r["level"] == "info" and len(r["request_id"]) == 32 for r in requests)


def test_ipm_cds_serve_refuses_a_non_loopback_address_without_jwt(capsys: pytest.CaptureFixture[str]) -> None:
    from ipm_cds.cli import EXIT_USAGE, main

    # refused before anything is bound: no socket is opened on 0.0.0.0
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == EXIT_USAGE
    assert "without JWT verification" in capsys.readouterr().err


# -- operations: health, readiness, metrics, OpenAPI, request logs ------------------------------------------


def test_healthz_and_readyz_answer_without_a_jwt(client: Client) -> None:
    """Probes carry no CDS client's token: both answer without one, and say nothing of any patient."""
    health = client.http.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = client.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    ruleset = client.server.ruleset
    assert body["status"] == "ready" and body["backend"] == "durable" and body["profile"] == "cms_lcd"
    assert body["ruleset"] == {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256}


def test_readiness_waits_for_the_ruleset_and_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """create_app(load="background"): /healthz answers at once; /readyz and the hooks answer 503 until the
    ruleset is loaded and the engine built, then 200."""
    from ipm_cds.ruleset import loader

    real, gate, entered = loader.load_ruleset, threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert gate.wait(60), "the test never released the load"
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "load_ruleset", held)
    sock, port = listening()
    config = ServiceConfig(as_of=AS_OF, feedback_log=tmp_path / "f.jsonl", bind=(LOOPBACK, port), backend="python")
    with (
        running(config, sock, load="background") as app,
        httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=60, trust_env=False) as http,
    ):
        assert entered.wait(60)
        assert http.get("/healthz").status_code == 200
        loading = http.get("/readyz")
        assert loading.status_code == 503 and loading.json() == {"status": "loading"}
        hook = http.post("/cds-services/ipm-cds-patient-view", json={})
        assert_outcome(hook, 503, "loading its ruleset")
        assert hook.headers["retry-after"] == "1"
        assert http.get("/cds-services").status_code == 503
        assert "ipm_cds_ready 0.0" in http.get("/metrics").text
        gate.set()
        deadline = time.monotonic() + 60
        while (ready := http.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.02)
        assert ready.json()["status"] == "ready" and ready.json()["backend"] == "python"
        assert http.get("/cds-services").status_code == 200
        assert app.state.ruleset.id == ready.json()["ruleset"]["id"]
        assert "ipm_cds_ready 1.0" in http.get("/metrics").text


def test_readiness_reports_a_ruleset_that_cannot_load(tmp_path: Path) -> None:
    sock, port = listening()
    config = ServiceConfig(ruleset=tmp_path / "no-such-ruleset", feedback_log=None, bind=(LOOPBACK, port))
    with (
        running(config, sock, load="background"),
        httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=60, trust_env=False) as http,
    ):
        deadline = time.monotonic() + 60
        while (ready := http.get("/readyz")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "no-such-ruleset" in ready.json()["detail"]
        assert http.get("/healthz").status_code == 200  # alive, not ready: an orchestrator sees why
        assert_outcome(http.post("/cds-services/ipm-cds-patient-view", json={}), 503, "could not load")


def metrics(http: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_latency_errors_and_cards(client: Client) -> None:
    route = "/cds-services/ipm-cds-patient-view"
    before = metrics(client.http)
    cards = assert_cards(client.post(route, hook_request(client.server, "cauda_equina")))
    assert_outcome(client.post("/cds-services/nope", {}), 404)
    assert_outcome(client.http.post(route, json={}), 401)
    request = hook_request(client.server, "opioids")
    del request["prefetch"]["patient"]
    assert_outcome(client.post(route, request), 412)
    after = metrics(client.http)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("ipm_cds_http_requests_total", route=route, method="POST", status="200") == 1
    assert delta("ipm_cds_http_requests_total", route=route, method="POST", status="401") == 1
    assert delta("ipm_cds_http_requests_total", route=route, method="POST", status="412") == 1
    assert delta("ipm_cds_http_requests_total", route="/cds-services/{service_id}", method="POST", status="404") == 1
    assert delta("ipm_cds_http_request_duration_seconds_count", route=route) == 3
    assert delta("ipm_cds_http_request_duration_seconds_sum", route=route) > 0
    assert delta("ipm_cds_errors_total", kind="not_found") == 1
    assert delta("ipm_cds_errors_total", kind="unauthenticated") == 1
    assert delta("ipm_cds_errors_total", kind="prefetch_missing") == 1
    assert delta("ipm_cds_evaluation_duration_seconds_count", hook="patient-view") == 1
    critical = sum(1 for c in cards if c["indicator"] == "critical")
    assert critical and delta("ipm_cds_cards_total", service="ipm-cds-patient-view", indicator="critical") == critical
    assert sample(after, "ipm_cds_ready") == 1
    ruleset = client.server.ruleset
    info = {k: v for (name, labels), _ in after.items() if name == "ipm_cds_ruleset_info" for k, v in labels}
    assert info == {
        "id": ruleset.id,
        "version": ruleset.version,
        "sha256": ruleset.sha256,
        "profile": "cms_lcd",
        "backend": "durable",
    }


def test_errors_are_counted_by_kind(client: Client) -> None:
    route = "/cds-services/ipm-cds-patient-view"
    before = metrics(client.http)
    request = hook_request(client.server, "opioids")
    request["prefetch"]["conditions"]["entry"][0]["resource"]["bogus"] = True
    assert_outcome(client.post(route, request), 400)
    assert_outcome(client.post(route, content=b"{"), 400)
    after = metrics(client.http)
    for kind in ("fhir_input", "malformed_json"):
        assert sample(after, "ipm_cds_errors_total", kind=kind) - sample(before, "ipm_cds_errors_total", kind=kind) == 1


def test_openapi_is_off_by_default(client: Client, open_server: Server) -> None:
    for base in (client.http, httpx.Client(base_url=open_server.base, timeout=60, trust_env=False)):
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert base.get(path).status_code in (401, 404), path


def test_openapi_flag_serves_docs_and_the_schema(tmp_path: Path) -> None:
    sock, port = listening()
    config = ServiceConfig(
        as_of=AS_OF, feedback_log=None, bind=(LOOPBACK, port), backend="python", openapi=True, metrics=False
    )
    with (
        running(config, sock),
        httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=60, trust_env=False) as http,
    ):
        spec = http.get("/openapi.json")
        assert spec.status_code == 200
        document = spec.json()
        assert document["info"]["title"] == "ipm-cds CDS Hooks service"
        assert {"/cds-services", "/cds-services/{service_id}", "/healthz", "/readyz"} <= set(document["paths"])
        assert "/metrics" not in document["paths"] and http.get("/metrics").status_code == 404  # metrics=False
        body = document["paths"]["/cds-services/{service_id}"]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HookRequest"}
        schemas = document["components"]["schemas"]
        assert {"HookRequest", "FeedbackRequest", "FeedbackItem"} <= set(schemas)
        assert set(schemas["HookRequest"]["required"]) == {"hook", "hookInstance", "context"}
        docs = http.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower() and "/openapi.json" in docs.text


def test_every_request_is_logged_once_with_its_id_and_fields(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    from ipm_cds.serving.observability import JsonFormatter, TextFormatter

    caplog.set_level(logging.INFO, logger="ipm_cds.serving")
    request = hook_request(client.server, "opioids")
    response = client.post("/cds-services/ipm-cds-patient-view", request, headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"  # the caller's id, echoed
    generated = client.http.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    spoofed = "a spaced id " + "x" * 80  # not a short token: replaced, so a log line cannot be forged
    assert re.fullmatch(
        r"[0-9a-f]{32}", client.http.get("/healthz", headers={"X-Request-ID": spoofed}).headers["x-request-id"]
    )
    (record,) = [r for r in caplog.records if getattr(r, "request_id", None) == "trace-42"]
    assert record.name == "ipm_cds.serving.observability" and record.levelno == logging.INFO
    assert record.__dict__["hook"] == "patient-view" and record.__dict__["status"] == 200
    assert record.__dict__["hookInstance"] == request["hookInstance"]
    assert record.__dict__["cards"] == len(response.json()["cards"]) and record.__dict__["latency_ms"] >= 0
    assert "patient" not in record.__dict__  # not without --log-patient-data
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "info" and line["request_id"] == "trace-42" and line["route"].endswith("patient-view")
    assert line["status"] == 200 and line["hook"] == "patient-view" and line["time"].endswith("Z")
    assert line["message"] == "POST /cds-services/ipm-cds-patient-view 200"
    assert "fhir-opioids" not in json.dumps(line)
    text = TextFormatter().format(record)
    assert "ipm_cds.serving.observability: POST /cds-services/ipm-cds-patient-view 200 request_id=trace-42" in text
    assert f"hookInstance={request['hookInstance']}" in text and " latency_ms=" in text


# -- the example requests of docs/cds-hooks.md ---------------------------------------------------------

REQUESTS = EXAMPLES / "requests"


@pytest.mark.parametrize("path", sorted(REQUESTS.glob("*.*-*.json")), ids=lambda p: p.stem)
def test_the_example_requests_match_their_bundle_and_are_answered(client: Client, path: Path) -> None:
    request = json.loads(path.read_text(encoding="utf-8"))
    name, hook = path.stem.split(".")
    data, pid = example(name)
    assert request["hook"] == hook and request["context"]["patientId"] == pid
    assert request["prefetch"] == prefetch_from_bundle(data, prefetch_templates(client.server.ruleset), pid), (
        f"{path.name} is stale: rebuild its prefetch with ipm_cds.interop.fhir.prefetch_from_bundle"
    )
    cards = assert_cards(client.post(f"/cds-services/ipm-cds-{hook}", request))
    assert cards
    if path.name == "cauda_equina.patient-view.json":
        feedback = json.loads((REQUESTS / "cauda_equina.feedback.json").read_text(encoding="utf-8"))
        by_uuid = {c["uuid"]: c for c in cards}
        for item in feedback["feedback"]:
            assert item["card"] in by_uuid, "cauda_equina.feedback.json names a card the service no longer returns"
            for accepted in item.get("acceptedSuggestions", []):
                assert accepted["id"] in {s["uuid"] for s in by_uuid[item["card"]].get("suggestions", [])}
        response = client.post("/cds-services/ipm-cds-patient-view/feedback", feedback)
        assert response.status_code == 200


def test_an_internal_error_is_500_and_its_message_is_not_logged(
    client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ipm_cds.engine.facade import Engine

    def broken(self: Engine, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Mr Example, born 1979-01-05")

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(Engine, "evaluate", broken)
    response = client.post("/cds-services/ipm-cds-patient-view", hook_request(client.server, "opioids"))
    assert_outcome(response, 500, "internal error")
    assert "RuntimeError" in caplog.text and "Mr Example" not in caplog.text and "1979" not in caplog.text
