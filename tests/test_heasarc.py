"""HEASARC's class table through astroquery (flashes/heasarc.py), from an answer served locally: HEASARC's own
class names in a written VOTable (tests/data/heasarc/README.md says which part is recorded)."""

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flashes import catalogue, heasarc, tags
from flashes.errors import HeasarcError
from flashes.settings import PROJECT_ROOT, Settings

RECORDED = Path(__file__).resolve().parent / "data" / "heasarc" / "class_table.vot"
SYNC = "/xamin/vo/tap/sync"  # where astroquery's Heasarc sends a TAP query: {conf.VO_URL}/tap/sync


@pytest.fixture(scope="module")
def classes() -> catalogue.HeasarcClasses:
    return catalogue.HeasarcClasses(PROJECT_ROOT / "data" / "heasarc_classes.csv")


@pytest.fixture
def recorded(httpserver: HTTPServer) -> str:
    """The VO base URL of a local HEASARC that answers the class query with the recorded table."""
    httpserver.expect_request(SYNC, method="POST").respond_with_data(RECORDED.read_bytes(), content_type="text/xml")
    return httpserver.url_for("/xamin/vo")


def votable(fields: str, rows: str, status: str = '<INFO name="QUERY_STATUS" value="OK"/>') -> str:
    return (
        f'<?xml version="1.0"?><VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        f'<RESOURCE type="results">{status}<TABLE>{fields}<DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE>'
        f"</RESOURCE></VOTABLE>"
    )


CLASS_FIELDS = '<FIELD name="class_id" datatype="int"/><FIELD name="class_name" datatype="char" arraysize="*"/>'


def test_the_recorded_answer_names_the_codes_as_the_bundled_table_does(
    httpserver: HTTPServer, recorded: str, classes: catalogue.HeasarcClasses
) -> None:
    names = heasarc.class_names(recorded, timeout_s=5)
    assert len(names) == 10
    assert names[1213] == "HMXRB SUPERGIANT X-RAY PULSAR ECLIPSING" and names[1100] == "HMXRB"
    ((request, _),) = httpserver.log
    assert request.form["QUERY"] == heasarc.QUERY == "SELECT class_id, class_name FROM class"
    assert request.form["LANG"] == "ADQL" and request.form["REQUEST"] == "doQuery"
    assert catalogue.differing_names(classes, names) == []
    for code, name in names.items():  # the same words, so the same seed tags
        assert tags.tags_of(name) == tags.tags_of(tags.class_name(classes.words(code)))


def test_differing_names_are_the_codes_named_in_other_words(classes: catalogue.HeasarcClasses) -> None:
    names = {1213: "HMXRB SUPERGIANT", 1316: "hmxrb be star x-ray pulsar, hard transient", 8765: "anything"}
    assert catalogue.differing_names(classes, names) == [1213]  # 8765: the bundled table cannot decode it


def test_heasarc_names_go_into_the_catalogue_and_stay_there(recorded: str, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    names = heasarc.class_names(recorded, timeout_s=5)
    catalogue.write(settings, names)
    online = {r.id: r for r in catalogue.load(settings)}  # load keeps them: no rebuild from the bundled table
    assert json.loads(settings.catalogue_path.read_text())["class_names"] == "HEASARC"
    offline = {r.id: r for r in catalogue.build(settings)}
    named = [r for r in online.values() if r.class_code in names]
    assert len(named) == 117 and online["velax-1"].class_name == "HMXRB SUPERGIANT X-RAY PULSAR ECLIPSING"
    assert all(r.class_name == names[r.class_code] for r in named)
    assert all(r.class_name == offline[sid].class_name for sid, r in online.items() if r.class_code not in names)
    assert all(r.labels_constant == offline[sid].labels_constant for sid, r in online.items())
    catalogue.write(settings)
    assert json.loads(settings.catalogue_path.read_text())["class_names"] == "bundled"


@pytest.mark.parametrize(
    "body, status, reason",
    [
        ("", 500, "HEASARC's TAP service at {url} answered HTTP 500"),
        (
            "<html><body>maintenance</body></html>",
            200,
            "HEASARC's TAP service at {url} answered with something other than a VOTable",
        ),
        (
            votable("", "", '<INFO name="QUERY_STATUS" value="ERROR">Table class not found</INFO>'),
            200,
            "HEASARC's TAP service at {url} refused the query: Table class not found",
        ),
        (
            votable(
                '<FIELD name="class_id" datatype="int"/><FIELD name="name" datatype="char" arraysize="*"/>',
                "<TR><TD>1100</TD><TD>HMXRB</TD></TR>",
            ),
            200,
            "HEASARC's class table came without the column class_name",
        ),
        (
            votable(CLASS_FIELDS, "<TR><TD>1100</TD><TD>HMXRB</TD></TR><TR><TD>12345</TD><TD>HMXRB</TD></TR>"),
            200,
            "HEASARC's class table, row 2: class_id is not a four-digit class code",
        ),
        (
            votable(CLASS_FIELDS, "<TR><TD></TD><TD>HMXRB</TD></TR>"),
            200,
            "HEASARC's class table, row 1: class_id is not a four-digit class code",
        ),
        (
            votable(CLASS_FIELDS, "<TR><TD>1100</TD><TD> </TD></TR>"),
            200,
            "HEASARC's class table, row 1: class 1100 has no name",
        ),
        (
            votable(CLASS_FIELDS, "<TR><TD>1100</TD><TD>HMXRB</TD></TR><TR><TD>1100</TD><TD>LMXRB</TD></TR>"),
            200,
            "HEASARC's class table, row 2: class 1100 is named twice",
        ),
        (votable(CLASS_FIELDS, ""), 200, "HEASARC's class table came empty"),
    ],
)
def test_an_answer_that_is_not_the_class_table_is_refused_with_the_reason(
    httpserver: HTTPServer, body: str, status: int, reason: str
) -> None:
    httpserver.expect_request(SYNC, method="POST").respond_with_data(body, status=status, content_type="text/xml")
    url = httpserver.url_for("/xamin/vo")
    with pytest.raises(HeasarcError) as refused:
        heasarc.class_names(url, timeout_s=5)
    assert str(refused.value) == reason.format(url=url)


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_an_unreachable_heasarc_is_an_error_not_a_crash(refusing_port: int) -> None:
    url = f"http://127.0.0.1:{refusing_port}/xamin/vo"
    with pytest.raises(HeasarcError) as refused:
        heasarc.class_names(url, timeout_s=5)
    assert str(refused.value) == f"HEASARC's TAP service at {url} could not be reached"


def test_a_heasarc_that_never_answers_is_given_up_after_the_timeout(httpserver: HTTPServer) -> None:
    release = threading.Event()

    def hold(request: Request) -> Response:
        release.wait(30)  # until the client has given up (the test sets it), at most 30 s
        return Response(RECORDED.read_bytes(), content_type="text/xml")

    httpserver.expect_request(SYNC, method="POST").respond_with_handler(hold)
    url = httpserver.url_for("/xamin/vo")
    try:
        with pytest.raises(HeasarcError) as refused:
            heasarc.class_names(url, timeout_s=0.5)
    finally:
        release.set()
    assert str(refused.value) == f"HEASARC's TAP service at {url} gave no answer within 0.5 s"
