"""Read pytest's JUnit XML into one status per test.

The runner counts outcomes from the XML rather than from pytest's closing line because the XML
is written by the xdist controller from every worker's reports, names each test, and has a
stable format. pytest must be run with ``-o junit_family=xunit1`` so that each ``testcase``
carries a ``file`` attribute, from which the real node id is rebuilt
(``dask/bag/tests/test_bag.py::test_x[param]``).

A test gets exactly one status, in this order of precedence: ``failed`` (a ``failure``
element, which includes a strict XPASS), ``error`` (setup/teardown/collection error, or a
crashed worker), ``xfailed`` (``skipped`` of type ``pytest.xfail``), ``skipped``, ``passed``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

STATUSES = ("passed", "failed", "error", "skipped", "xfailed")


def testcase_status(case: ET.Element) -> str:
    """The single status of one ``testcase`` element."""
    tags = {child.tag: child for child in case}
    if "failure" in tags:
        return "failed"
    if "error" in tags:
        return "error"
    skipped = tags.get("skipped")
    if skipped is not None:
        return "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
    return "passed"


def testcase_id(case: ET.Element) -> str:
    """The pytest node id of a ``testcase``, rebuilt from ``file``, ``classname`` and ``name``."""
    classname = case.get("classname", "")
    name = case.get("name", "")
    path = case.get("file", "")
    module = path.removesuffix(".py").replace("/", ".")
    if not path.endswith(".py") or not classname.startswith(module):
        return f"{classname}::{name}" if classname else name
    classes = [part for part in classname[len(module) :].split(".") if part]
    return "::".join([path, *classes, name])


def read_statuses(xml_path: Path) -> dict[str, str]:
    """Map each test's node id to its status."""
    root = ET.parse(xml_path).getroot()
    return {testcase_id(case): testcase_status(case) for case in root.iter("testcase")}


def count_statuses(statuses: dict[str, str]) -> dict[str, int]:
    """How many tests have each status (every status present, zero if none)."""
    counts = Counter(statuses.values())
    return {status: counts.get(status, 0) for status in STATUSES}
