"""Human sizes/durations, Go time formats and tabwriter tables, as docker prints them."""

import io

import pytest

from berth_cli.env import Stream
from berth_cli.errors import StreamError, TemplateError
from berth_cli.formatting import (bytes_size, display_json_messages, ellipsis, go_time_string,
                                  human_duration, human_size, render_rows, rfc3339, tabwrite,
                                  truncate_id, Row)


@pytest.mark.parametrize("size, precision, expected", [
    (0, 4, "0B"), (999, 4, "999B"), (1000, 4, "1kB"), (1024, 4, "1.024kB"),
    (1_000_000, 4, "1MB"), (1_048_576, 4, "1.049MB"), (3.42e9, 4, "3.42GB"),
    (5.372e12, 4, "5.372TB"), (4_264_000, 3, "4.26MB"), (1_200, 3, "1.2kB"),
    (1_982_444, 3, "1.98MB"), (1_982_444, 4, "1.982MB"), (999_999, 3, "1e+03kB"),
])
def test_human_size_is_go_units_decimal(size, precision, expected):
    assert human_size(size, precision) == expected


@pytest.mark.parametrize("size, expected", [
    (0, "0B"), (1024, "1KiB"), (1024 * 1024, "1MiB"), (int(3.42 * 1024 ** 3), "3.42GiB"),
    (4111855616, "3.829GiB"), (1023, "1023B"),
])
def test_bytes_size_is_go_units_binary(size, expected):
    assert bytes_size(size) == expected


@pytest.mark.parametrize("seconds, expected", [
    (0, "Less than a second"), (0.9, "Less than a second"), (1, "1 second"), (2, "2 seconds"),
    (59, "59 seconds"), (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
    (59 * 60 + 59, "59 minutes"), (3600, "About an hour"), (90 * 60, "2 hours"),
    (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (13 * 86400, "13 days"),
    (14 * 86400, "2 weeks"), (59 * 86400, "8 weeks"), (60 * 86400, "2 months"),
    (364 * 86400, "12 months"), (2 * 365 * 86400, "2 years"),
])
def test_human_duration_is_go_units(seconds, expected):
    assert human_duration(seconds) == expected


def test_go_time_formats_in_local_time(utc):
    assert go_time_string(1704164645) == "2024-01-02 03:04:05 +0000 UTC"
    assert rfc3339(1704164645) == "2024-01-02T03:04:05Z"
    assert rfc3339(1704164645, 7) == "2024-01-02T03:04:05.000000007Z"


def test_rfc3339_with_an_offset(monkeypatch):
    import time
    monkeypatch.setenv("TZ", "CET-1")
    time.tzset()
    try:
        assert rfc3339(1704164645) == "2024-01-02T04:04:05+01:00"
        assert go_time_string(1704164645) == "2024-01-02 04:04:05 +0100 CET"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_truncate_id_and_ellipsis():
    assert truncate_id("sha256:65b69ccfd229b196402817ecf2dc832d") == "65b69ccfd229"
    assert truncate_id("<missing>") == "<missing>"
    assert truncate_id("abc") == "abc"
    assert ellipsis("/bin/sh -c #(nop) ADD file:abc in / ", 45) == "/bin/sh -c #(nop) ADD file:abc in / "
    long = "/bin/sh -c #(nop) ADD file:6f88a8bd7c8c2b3b4f5c6d7e8f9a0b1c2d3e4f5 in / "
    assert ellipsis(long, 45) == long[:44] + "…"


def test_tabwriter_pads_columns_to_widest_cell_plus_three_and_at_least_ten():
    text = "REPOSITORY\tTAG\tIMAGE ID\tSIZE\nbusybox\tlatest\t65b69ccfd229\t1.98MB\n"
    assert tabwrite(text) == (
        "REPOSITORY   TAG       IMAGE ID       SIZE\n"
        "busybox      latest    65b69ccfd229   1.98MB\n")


def test_tabwriter_column_blocks_end_at_lines_without_that_cell():
    # Go's elastic tabstops: a line with fewer cells ends the column block.
    text = "a\tbbbbbbbbbbbbbbb\tc\nx\n" + "long-cell-here\ty\tz\n"
    assert tabwrite(text, minwidth=0, padding=1) == (
        "a bbbbbbbbbbbbbbb c\n"
        "x\n"
        "long-cell-here y z\n")


def test_tabwriter_measures_wide_characters_by_display_width():
    out = tabwrite("名前\tx\nab\ty\n", minwidth=0, padding=1)
    assert out == "名前 x\nab   y\n"


class _Pet(Row):
    type_name = "petContext"
    fields = ("Name", "Legs")
    headers = {"Name": "NAME", "Legs": "LEGS"}

    def __init__(self, name, legs):
        self.name, self.legs = name, legs

    def Name(self):
        return self.name

    def Legs(self):
        return str(self.legs)


def test_render_rows_table_has_header_from_field_names():
    rows = [_Pet("cat", 4), _Pet("sparrow", 2)]
    assert render_rows("table {{.Name}}\\t{{.Legs}}", rows) == (
        "NAME      LEGS\ncat       4\nsparrow   2\n")


def test_render_rows_header_keeps_text_functions_intact():
    # docker's HeaderFunctions: upper/json/... pass the header through
    rows = [_Pet("cat", 4)]
    assert render_rows("table {{upper .Name}}\t{{json .Legs}}", rows) == "NAME      LEGS\nCAT       \"4\"\n"


def test_render_rows_plain_template_and_json():
    rows = [_Pet("cat", 4)]
    assert render_rows("{{.Name}} has {{.Legs}} legs", rows) == "cat has 4 legs\n"
    assert render_rows("json", rows) == '{"Legs":"4","Name":"cat"}\n'
    assert render_rows("table", []) == "\n"


def test_render_rows_unknown_field_is_a_template_error():
    with pytest.raises(TemplateError) as e:
        render_rows("{{.Color}}", [_Pet("cat", 4)])
    assert e.value.message == ('template parsing error: template: :1:2: executing "" at <.Color>: '
                               "can't evaluate field Color in type petContext")


def _display(messages, tty=False):
    raw = io.BytesIO()
    display_json_messages(messages, Stream(raw), tty=tty)
    return raw.getvalue().decode()


def test_json_messages_without_a_terminal_skip_progress_bars():
    messages = [
        {"status": "Pulling from library/busybox", "id": "latest"},
        {"status": "Downloading", "id": "abc", "progressDetail": {"current": 10, "total": 100},
         "progress": "[=>   ]"},
        {"status": "Download complete", "id": "abc", "progressDetail": {}},
        {"stream": "Loaded image: busybox:latest\n"},
        {"status": "sha256:0123"},
    ]
    assert _display(messages) == ("latest: Pulling from library/busybox\nabc: Download complete\n"
                                  "Loaded image: busybox:latest\nsha256:0123\n")


def test_json_messages_on_a_terminal_redraw_progress_lines_in_place():
    out = _display([{"status": "Downloading", "id": "abc", "progressDetail": {"current": 50, "total": 100}},
                    {"status": "Downloading", "id": "abc", "progressDetail": {"current": 100, "total": 100}}],
                   tty=True)
    assert out.count("\x1b[1A") == 2 and out.count("\x1b[1B") == 2
    assert "abc: Downloading [" in out and "100B/100B" in out


def test_json_message_error_raises_its_message():
    with pytest.raises(StreamError) as e:
        _display([{"status": "working"}, {"errorDetail": {"message": "no space left"}, "error": "no space left"}])
    assert e.value.message == "no space left"
