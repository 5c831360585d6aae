"""SARIF and JUnit output validated against the published schemas their consumers use (vendored
under tests/schemas with their licences; see tests/schemas/README.md): the OASIS SARIF 2.1.0 JSON
schema (what GitHub code scanning ingests) and the JUnit XSD of Jenkins' xUnit plugin
(junit-10.xsd). Single reports, fleets, waived findings, erroring rules and hostile text."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from fmt_samples import HOSTILE, file_report, report

from tuneup.formats import OutputFormat, render
from tuneup.model import Fleet
from tuneup.waivers import Waiver, apply

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _fleet(*reports):
    return Fleet(profile="web", params=dict(reports[0].params), reports=tuple(reports))


def _waived():
    return apply(report(), [Waiver("NET-SOMAXCONN", "redis sets its own", dt.date(2099, 1, 1))], dt.date(2025, 1, 1))


SAMPLES = {
    "report": lambda: report(),
    "file-facts-with-error": lambda: file_report(),
    "waived": _waived,
    "hostile-hostname": lambda: report(HOSTILE),
    "fleet": lambda: _fleet(report("web-1"), report("web-2", net__core__somaxconn=65535), _waived()),
    "fleet-hostile": lambda: _fleet(report("a"), report(HOSTILE)),
}


@pytest.fixture(scope="module")
def sarif_validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")
    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())
    cls = jsonschema.validators.validator_for(schema)          # draft-04, as the schema declares
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def junit_schema():
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema is in the test extra")
    return xmlschema.XMLSchema(str(SCHEMAS / "junit-10.xsd"))


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_sarif_is_valid_sarif_2_1_0(sample, sarif_validator):
    doc = json.loads(render(SAMPLES[sample](), OutputFormat.SARIF))
    errors = sorted(sarif_validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])
    assert doc["version"] == "2.1.0" and doc["runs"][0]["results"]


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_junit_is_valid_against_the_xunit_junit_xsd(sample, junit_schema):
    text = render(SAMPLES[sample](), OutputFormat.JUNIT)
    errors = list(junit_schema.iter_errors(text))
    assert not errors, "\n".join(str(e.reason) + " at " + str(e.path) for e in errors[:10])


def test_the_schemas_bite(sarif_validator, junit_schema):
    doc = json.loads(render(report(), OutputFormat.SARIF))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert list(sarif_validator.iter_errors(doc))
    assert not junit_schema.is_valid('<testsuites><testsuite name="x" tests="1" bogus="1"/></testsuites>')
