"""The Go text/template subset behind --format."""

import pytest

from berth_cli.errors import TemplateError
from berth_cli.template import Template, go_float, go_sprintf

DATA = {
    "Id": "sha256:65b69ccfd229",
    "RepoTags": ["busybox:latest", "mybox:1"],
    "Size": 1982444,
    "Ratio": 4264000.0,
    "Config": {"Cmd": ["sh", "-c", "echo hi"], "Entrypoint": None, "Labels": {"b": "2", "a": "1"},
               "Env": []},
    "Empty": "",
    "Flag": True,
}


def render(src, data=DATA, **kw):
    return Template(src).execute(data, **kw)


@pytest.mark.parametrize("src, expected", [
    ("{{.Id}}", "sha256:65b69ccfd229"),
    ("{{.Config.Cmd}}", "[sh -c echo hi]"),
    ("{{json .Config.Cmd}}", '["sh","-c","echo hi"]'),
    ("{{json .Config.Entrypoint}}", "null"),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{index .Config.Labels \"a\"}}", "1"),
    ("{{index .Config.Labels \"zz\"}}", ""),
    ("{{index .RepoTags 1}}", "mybox:1"),
    ("{{join .RepoTags \", \"}}", "busybox:latest, mybox:1"),
    ("{{range .RepoTags}}[{{.}}]{{end}}", "[busybox:latest][mybox:1]"),
    ("{{range $i, $t := .RepoTags}}{{if $i}},{{end}}{{$t}}{{end}}", "busybox:latest,mybox:1"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}", "a=1 b=2 "),
    ("{{range .Config.Env}}x{{else}}no env{{end}}", "no env"),
    ("{{if .Empty}}a{{else if .Flag}}b{{else}}c{{end}}", "b"),
    ("{{if not .Empty}}empty{{end}}", "empty"),
    ("{{with .Config}}{{len .Cmd}}{{end}}", "3"),
    ("{{with .Empty}}x{{else}}none{{end}}", "none"),
    ("{{upper \"abc\"}} {{lower \"ABC\"}} {{title \"hello big-world\"}}", "ABC abc Hello Big-World"),
    ("{{printf \"%s=%d|%5s|%-5s|%q|%v|%t\" \"k\" 42 \"r\" \"l\" \"q\" .RepoTags .Flag}}",
     'k=42|    r|l    |"q"|[busybox:latest mybox:1]|true'),
    ("{{printf \"%05d %x %.2f\" 42 255 3.14159}}", "00042 ff 3.14"),
    ("{{.Size}} {{.Ratio}}", "1982444 4.264e+06"),
    ("{{len .RepoTags}} {{.RepoTags | len}}", "2 2"),
    ("{{$n := len .RepoTags}}{{$n}}{{$n = 5}} {{$n}}", "2 5"),
    ("{{(index .RepoTags 0)}}", "busybox:latest"),
    ("{{(.Config).Cmd}}", "[sh -c echo hi]"),
    ("{{if eq .Size 1982444}}same{{end}}{{if ne .Empty \"x\"}}!{{end}}", "same!"),
    ("{{if and .Flag (gt .Size 10)}}big{{end}}", "big"),
    ("{{if or .Empty .Flag}}or{{end}}", "or"),
    ("{{range .RepoTags}}{{if eq . \"busybox:latest\"}}{{continue}}{{end}}{{.}}{{end}}", "mybox:1"),
    ("{{range .RepoTags}}{{.}}{{break}}{{end}}", "busybox:latest"),
    ("{{split \"a,b,c\" \",\"}}", "[a b c]"),
    ("{{pad \"x\" 1 2}}|{{truncate \"abcdef\" 3}}", " x  |abc"),
    ("a  {{- \"b\" -}}  c", "abc"),
    ("{{/* a comment */}}x{{- /* trimmed */ -}} y", "xy"),
    ("{{`raw \\n`}}", "raw \\n"),
    ("{{\"tab\\there\"}}", "tab\there"),
    ("{{'a'}}", "97"),
    ("{{.id}} {{.ID}}", "sha256:65b69ccfd229 sha256:65b69ccfd229"),
    ("{{print \"a\" 1 2 \"b\"}}", "a1 2b"),
    ("{{println \"a\" 1}}", "a 1\n"),
    ("{{slice \"abcdef\" 1 3}}", "bc"),
    ("{{.Missing}}", "<no value>"),
])
def test_template_renders_like_go(src, expected):
    assert render(src) == expected


@pytest.mark.parametrize("src, message", [
    ("{{.Id", "template: :1: unclosed action"),
    ("{{if .Id}}x", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{nosuch .Id}}", 'template: :1: function "nosuch" not defined'),
    ("{{.Id | }}", "template: :1: missing value for command"),
    ("{{json.}}", "template: :1: unexpected <.> in operand"),
    ("{{len(.Id)}}", "template: :1: unexpected '(' in operand"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{\"open}}", "template: :1: unterminated quoted string"),
    ("line1\n{{.Id", "template: :2: unclosed action"),
    ("{{template \"x\"}}", "template: :1: {{template}} is not supported in --format templates"),
])
def test_parse_errors_read_like_go(src, message):
    with pytest.raises(TemplateError) as e:
        Template(src)
    assert e.value.message == message


@pytest.mark.parametrize("src, message", [
    ("{{.Nope}}", 'template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"'),
    ("x\n {{.Config.Nope.X}}", 'template: :2:3: executing "" at <.Config.Nope.X>: map has no entry for key "Nope"'),
    ("{{index .RepoTags 5}}", 'template: :1:2: executing "" at <index>: error calling index: index out of range: 5'),
    ("{{len .Size}}", 'template: :1:2: executing "" at <len>: error calling len: len of type int'),
    ("{{json}}", 'template: :1:2: executing "" at <json>: wrong number of args for json: want 1 got 0'),
    ("{{.Id.Sub}}", 'template: :1:2: executing "" at <.Id.Sub>: can\'t evaluate field Sub in type string'),
    ("{{$x}}", 'template: :1:2: executing "" at <$x>: undefined variable "$x"'),
    ("{{.Config.Entrypoint.X}}", 'template: :1:2: executing "" at <.Config.Entrypoint.X>: '
                                 "nil pointer evaluating interface {}.X"),
])
def test_execution_errors_name_the_node(src, message):
    with pytest.raises(TemplateError) as e:
        render(src, missingkey="error")
    assert e.value.message == message


def test_variables_are_scoped_to_their_block():
    with pytest.raises(TemplateError) as e:
        render("{{if .Flag}}{{$x := 1}}{{end}}{{$x}}")
    assert 'undefined variable "$x"' in e.value.message


def test_header_mode_passes_text_functions_through():
    tmpl = Template("{{upper .Name}}|{{json .Name}}|{{lower .Name}}")
    assert tmpl.execute({"Name": "NAME"}, header=True) == "NAME|NAME|NAME"
    assert tmpl.execute({"Name": "Rex"}) == 'REX|"Rex"|rex'


@pytest.mark.parametrize("value, expected", [
    (4264000.0, "4.264e+06"), (123456.0, "123456"), (1e6, "1e+06"), (0.0001, "0.0001"),
    (0.00001, "1e-05"), (1.5, "1.5"), (-2.5e-7, "-2.5e-07"), (100.0, "100"), (0.0, "0"),
    (float("inf"), "+Inf"),
])
def test_floats_print_like_go(value, expected):
    assert go_float(value) == expected


def test_sprintf_reports_missing_and_extra_arguments_like_go():
    assert go_sprintf("%s %d", "a") == "a %!d(MISSING)"
    assert go_sprintf("%s", "a", 3) == "a%!(EXTRA int=3)"
    assert go_sprintf("%d", "x") == "%!d(string=x)"
    assert go_sprintf("100%%") == "100%"
