"""A subset of Go's text/template, as docker's ``--format`` uses it.

Supported: ``{{.Field}}``, chains ``{{.A.B}}``, ``{{.}}``, variables (``$``,
``$x := ...``, ``$x = ...``, ``range $k, $v := ...``), pipelines with ``|``,
parenthesised pipelines (also ``(index . 0).Name``), ``if/else if/else``,
``range``/``else``/``break``/``continue``, ``with``/``else``, comments, trim
markers ``{{-``/``-}}``, string/raw/char/number/bool/nil literals; Go's builtin
functions (and, or, not, len, index, slice, print, printf, println, eq, ne, lt,
le, gt, ge) and docker's (json, join, split, title, lower, upper, pad, truncate).
Values print the way Go's fmt %v prints them (``[a b]``, ``map[k:v]``, ``<nil>``).

Data is plain JSON-shaped Python values, or objects with ``template_field`` (the
formatter rows standing in for docker's Go structs). A map key missing from a
dict is tried case-insensitively, because docker evaluates inspect templates on
Go structs first (``.ID``) and on the raw JSON second (``.Id``).
"""

from __future__ import annotations

from .errors import TemplateError

_SPACE = " \t\r\n"
_MISSING = object()


class _NoValue:
    """Go's invalid reflect.Value: what a missing map key yields; prints "<no value>"."""

    def __bool__(self):
        return False

    def __repr__(self):
        return "<no value>"


NO_VALUE = _NoValue()


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _ExecError(Exception):
    def __init__(self, node, message: str):
        super().__init__(message)
        self.node = node
        self.message = message


# -- lexing ---------------------------------------------------------------------

class _Tok:
    __slots__ = ("kind", "value", "pos", "chain", "attached", "spaced")

    def __init__(self, kind, value, pos, chain=(), attached=False):
        self.kind = kind
        self.value = value
        self.pos = pos
        self.chain = tuple(chain)
        self.attached = attached
        self.spaced = True  # whether whitespace (or the delimiter) precedes it

    def describe(self) -> str:
        """How Go's parser names a token in "unexpected ..." errors."""
        if self.kind == "dot":
            return "<.>"
        if self.kind in ("ident", "var", "field"):
            return "<" + (self.value or "") + "".join("." + c for c in self.chain) + ">"
        if self.kind == "string":
            return _go_quote(self.value)
        if self.kind == "number":
            return f'"{self.value}"'
        return repr(str(self.value))


def _is_ident_start(c: str) -> bool:
    return c == "_" or c.isalpha()


def _is_ident(c: str) -> bool:
    return c == "_" or c.isalnum()


class _Lexer:
    def __init__(self, src: str):
        self.src = src
        self.items: list = []  # ("text", str, pos) | ("action", [tokens], pos) | ("comment",)

    def error(self, pos: int, message: str):
        line = self.src.count("\n", 0, pos) + 1
        raise TemplateError(f"template: :{line}: {message}")

    def run(self) -> list:
        src, i, n = self.src, 0, len(self.src)
        ltrim_next = False
        while i < n:
            start = src.find("{{", i)
            text = src[i:] if start < 0 else src[i:start]
            if ltrim_next:
                text = text.lstrip(_SPACE)
                ltrim_next = False
            if start < 0:
                if text:
                    self.items.append(("text", text, i))
                break
            j = start + 2
            if src.startswith("-", j) and j + 1 < n and src[j + 1] in _SPACE:
                text = text.rstrip(_SPACE)
                j += 2
            if text:
                self.items.append(("text", text, i))
            j, rtrim = self._action(j, start)
            ltrim_next = rtrim
            i = j
        return self.items

    def _close(self, i: int) -> tuple[int, bool] | None:
        src = self.src
        if src.startswith("-}}", i) and i > 0 and src[i - 1] in _SPACE:
            return i + 3, True
        if src.startswith("}}", i):
            return i + 2, False
        return None

    def _action(self, i: int, start: int) -> tuple[int, bool]:
        src, n = self.src, len(self.src)
        while i < n and src[i] in _SPACE:
            i += 1
        if src.startswith("/*", i):
            end = src.find("*/", i + 2)
            if end < 0:
                self.error(start, "unclosed comment")
            j = end + 2
            while j < n and src[j] in _SPACE:
                j += 1
            closed = self._close(j)
            if closed is None:
                self.error(start, "comment ends before closing delimiter")
            return closed
        toks: list[_Tok] = []
        self._depth = 0  # parentheses open in this action
        while True:
            before = i
            while i < n and src[i] in _SPACE:
                i += 1
            spaced = i > before or not toks
            count = len(toks)
            if i >= n:
                self.error(start, "unclosed action")
            closed = self._close(i)
            if closed is not None and self._depth == 0:
                self.items.append(("action", toks, start))
                return closed
            i = self._token(toks, i)
            if len(toks) > count:
                toks[count].spaced = spaced

    def _token(self, toks: list, i: int) -> int:
        """Lex one token at src[i] into toks; return the position after it."""
        src, n = self.src, len(self.src)
        c = src[i]
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                if src[j] == "\\":
                    j += 1
                elif src[j] == "\n":
                    self.error(i, "unterminated quoted string")
                j += 1
            if j >= n:
                self.error(i, "unterminated quoted string")
            toks.append(_Tok("string", _unquote(src[i:j + 1], self, i), i))
            i = j + 1
        elif c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                self.error(i, "unterminated raw quoted string")
            toks.append(_Tok("string", src[i + 1:j], i))
            i = j + 1
        elif c == "'":
            j = i + 1
            while j < n and src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            if j >= n:
                self.error(i, "unterminated character constant")
            value = _unquote('"' + src[i + 1:j] + '"', self, i)
            if len(value) != 1:
                self.error(i, f"malformed character constant: {src[i:j + 1]}")
            toks.append(_Tok("number", ord(value), i))
            i = j + 1
        elif c == "|":
            toks.append(_Tok("pipe", "|", i))
            i += 1
        elif c == "(":
            self._depth += 1
            toks.append(_Tok("lparen", "(", i))
            i += 1
        elif c == ")":
            self._depth -= 1
            if self._depth < 0:
                self.error(i, "unexpected right paren")
            toks.append(_Tok("rparen", ")", i))
            i += 1
            if src.startswith(".", i) and i + 1 < n and _is_ident_start(src[i + 1]):
                chain, i = self._chain(i)
                toks.append(_Tok("field", None, i, chain, attached=True))
        elif c == ",":
            toks.append(_Tok("comma", ",", i))
            i += 1
        elif src.startswith(":=", i):
            toks.append(_Tok("declare", ":=", i))
            i += 2
        elif c == "=":
            toks.append(_Tok("assign", "=", i))
            i += 1
        elif c == "$":
            j = i + 1
            while j < n and _is_ident(src[j]):
                j += 1
            name = src[i:j]
            chain: list[str] = []
            if src.startswith(".", j) and j + 1 < n and _is_ident_start(src[j + 1]):
                chain, j = self._chain(j)
            toks.append(_Tok("var", name, i, chain))
            i = j
        elif c == "." and i + 1 < n and _is_ident_start(src[i + 1]):
            chain, j = self._chain(i)
            toks.append(_Tok("field", None, i, chain))
            i = j
        elif c == "." and not (i + 1 < n and src[i + 1].isdigit()):
            toks.append(_Tok("dot", ".", i))
            i += 1
        elif c.isdigit() or c == "." or (c in "+-" and i + 1 < n and (src[i + 1].isdigit() or src[i + 1] == ".")):
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] in "._" or (src[j] in "+-" and src[j - 1] in "eEpP")):
                j += 1
            toks.append(_Tok("number", _number(src[i:j], self, i), i))
            i = j
        elif _is_ident_start(c):
            j = i + 1
            while j < n and _is_ident(src[j]):
                j += 1
            toks.append(_Tok("ident", src[i:j], i))
            i = j
            if src.startswith(".", i) and i + 1 < n and _is_ident_start(src[i + 1]):
                chain, i = self._chain(i)  # fn.Field: a field of the function's result
                toks.append(_Tok("field", None, i, chain, attached=True))
        else:
            self.error(i, f"unexpected {c!r} in command")
        return i

    def _chain(self, i: int) -> tuple[list[str], int]:
        src, n = self.src, len(self.src)
        chain = []
        while src.startswith(".", i) and i + 1 < n and _is_ident_start(src[i + 1]):
            j = i + 1
            while j < n and _is_ident(src[j]):
                j += 1
            chain.append(src[i + 1:j])
            i = j
        return chain, i


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def _unquote(quoted: str, lexer: _Lexer, pos: int) -> str:
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1:i + 2]
        if e in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + width]
            try:
                out.append(chr(int(digits, 16)))
            except ValueError:
                lexer.error(pos, f"invalid syntax in {quoted}")
            i += 2 + width
        elif e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        else:
            lexer.error(pos, f"invalid syntax in {quoted}")
    return "".join(out)


def _number(text: str, lexer: _Lexer, pos: int):
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return float(text.replace("_", ""))
    except ValueError:
        lexer.error(pos, f"bad number syntax: {text!r}")


# -- parsing --------------------------------------------------------------------

class _Node:
    __slots__ = ("pos", "text")


class _Field(_Node):
    __slots__ = ("chain",)

    def __init__(self, pos, chain):
        self.pos, self.chain = pos, chain
        self.text = "." + ".".join(chain)


class _Var(_Node):
    __slots__ = ("name", "chain")

    def __init__(self, pos, name, chain):
        self.pos, self.name, self.chain = pos, name, chain
        self.text = name + "".join("." + c for c in chain)


class _Dot(_Node):
    def __init__(self, pos):
        self.pos, self.text = pos, "."


class _Literal(_Node):
    __slots__ = ("value",)

    def __init__(self, pos, value, text):
        self.pos, self.value, self.text = pos, value, text


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos, name):
        self.pos, self.name, self.text = pos, name, name


class _PipeArg(_Node):
    __slots__ = ("pipe", "chain")

    def __init__(self, pos, pipe, chain=()):
        self.pos, self.pipe, self.chain = pos, pipe, tuple(chain)
        self.text = "(" + pipe.text + ")" + "".join("." + c for c in chain)


class _Pipe:
    __slots__ = ("decl", "assign", "cmds", "pos", "text")

    def __init__(self, decl, assign, cmds, pos):
        self.decl, self.assign, self.cmds, self.pos = decl, assign, cmds, pos
        self.text = " | ".join(" ".join(a.text for a in cmd) for cmd in cmds)


class _Action:
    __slots__ = ("pipe", "pos")

    def __init__(self, pipe, pos):
        self.pipe, self.pos = pipe, pos


class _Branch:  # if / range / with
    __slots__ = ("kind", "pipe", "body", "orelse", "pos")

    def __init__(self, kind, pipe, body, orelse, pos):
        self.kind, self.pipe, self.body, self.orelse, self.pos = kind, pipe, body, orelse, pos


class _Control:  # break / continue
    __slots__ = ("kind", "pos")

    def __init__(self, kind, pos):
        self.kind, self.pos = kind, pos


class _Parser:
    def __init__(self, src: str, items: list, funcs):
        self.src = src
        self.items = items
        self.i = 0
        self.funcs = funcs
        self.range_depth = 0

    def error(self, pos: int, message: str):
        line = self.src.count("\n", 0, pos) + 1
        raise TemplateError(f"template: :{line}: {message}")

    def parse(self) -> list:
        nodes, end = self.parse_list()
        if end is not None:
            kind, _, pos = end
            self.error(pos, f"unexpected {{{{{kind}}}}}")
        return nodes

    def parse_list(self):
        """Nodes up to an {{else...}} or {{end}}, which is returned (kind, tokens, pos)."""
        nodes = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if item[0] == "text":
                nodes.append(item[1])
                continue
            toks, pos = item[1], item[2]
            if not toks:
                self.error(pos, "missing value for command")
            head = toks[0]
            word = head.value if head.kind == "ident" else None
            if word in ("end", "else"):
                return nodes, (word, toks[1:], pos)
            if word in ("if", "range", "with"):
                nodes.append(self.parse_branch(word, toks[1:], pos))
            elif word in ("break", "continue"):
                if self.range_depth == 0:
                    self.error(pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                nodes.append(_Control(word, pos))
            elif word in ("define", "template", "block"):
                self.error(pos, f"{{{{{word}}}}} is not supported in --format templates")
            else:
                pipe = self.parse_pipe(toks, pos, "command")
                nodes.append(_Action(pipe, pos))
        return nodes, None

    def parse_branch(self, kind: str, toks: list, pos: int) -> _Branch:
        pipe = self.parse_pipe(toks, pos, kind)
        if kind == "range":
            self.range_depth += 1
        body, end = self.parse_list()
        if kind == "range":
            self.range_depth -= 1
        if end is None:
            self.error(pos, "unexpected EOF")
        orelse = []
        if end[0] == "else":
            rest = end[1]
            if rest and rest[0].kind == "ident" and rest[0].value in ("if", "with") and kind != "range":
                # {{else if ...}}: a nested branch that shares our {{end}}
                orelse = [self.parse_branch(rest[0].value, rest[1:], end[2])]
            else:
                if rest:
                    self.error(end[2], "unexpected tokens after {{else}}")
                orelse, end = self.parse_list()
                if end is None:
                    self.error(pos, "unexpected EOF")
                if end[0] != "end":
                    self.error(end[2], "expected end; found {{else}}")
        elif end[1]:
            self.error(end[2], "unexpected tokens after {{end}}")
        return _Branch(kind, pipe, body, orelse, pos)

    def parse_pipe(self, toks: list, pos: int, context: str) -> _Pipe:
        i = 0
        decl: list[str] = []
        assign = False
        if toks and toks[0].kind == "var" and not toks[0].chain:
            names = [toks[0].value]
            k = 1
            if len(toks) > 2 and toks[1].kind == "comma" and toks[2].kind == "var":
                names.append(toks[2].value)
                k = 3
            if k < len(toks) and toks[k].kind in ("declare", "assign"):
                if toks[k].kind == "assign" and len(names) > 1:
                    self.error(pos, "too many declarations in command")
                if len(names) > 1 and context != "range":
                    self.error(pos, "too many declarations in command")
                decl, assign, i = names, toks[k].kind == "assign", k + 1
        pipe, i = self._pipe_from(toks, i, pos, context, in_paren=False)
        if i != len(toks):
            self.error(toks[i].pos, f"unexpected {toks[i].value!r} in {context}")
        pipe.decl, pipe.assign = decl, assign
        return pipe

    def _pipe_from(self, toks, i, pos, context, in_paren):
        cmds, cur = [], []
        while i < len(toks):
            t = toks[i]
            if t.kind == "rparen":
                if in_paren:
                    break
                self.error(t.pos, "unexpected right paren")
            if t.kind == "pipe":
                if not cur:
                    self.error(t.pos, "missing value for command")
                cmds.append(cur)
                cur = []
                i += 1
                continue
            if cur and not t.spaced:
                self.error(t.pos, f"unexpected {t.describe()} in operand")
            node, i = self._operand(toks, i, context)
            cur.append(node)
        if cur:
            cmds.append(cur)
        elif cmds:
            self.error(pos, "missing value for command")
        if not cmds:
            self.error(pos, f"missing value for {context}")
        for cmd in cmds[1:] + cmds[:1]:
            if isinstance(cmd[0], _Literal) and cmd[0].value is None and cmd[0].text == "nil":
                self.error(cmd[0].pos, "nil is not a command")
        return _Pipe([], False, cmds, pos), i

    def _operand(self, toks, i, context):
        t = toks[i]
        kind = t.kind
        if kind == "lparen":
            pipe, j = self._pipe_from(toks, i + 1, t.pos, "parenthesized pipeline", in_paren=True)
            if j >= len(toks) or toks[j].kind != "rparen":
                self.error(t.pos, "unclosed left paren")
            j += 1
            if j < len(toks) and toks[j].kind == "field" and toks[j].attached:
                return _PipeArg(t.pos, pipe, toks[j].chain), j + 1
            return _PipeArg(t.pos, pipe), j
        if kind == "field":
            return _Field(t.pos, t.chain), i + 1
        if kind == "var":
            return _Var(t.pos, t.value, t.chain), i + 1
        if kind == "dot":
            return _Dot(t.pos), i + 1
        if kind == "string":
            return _Literal(t.pos, t.value, _go_quote(t.value)), i + 1
        if kind == "number":
            return _Literal(t.pos, t.value, str(t.value)), i + 1
        if kind == "ident":
            name = t.value
            if name in ("true", "false"):
                return _Literal(t.pos, name == "true", name), i + 1
            if name == "nil":
                return _Literal(t.pos, None, "nil"), i + 1
            if name not in self.funcs:
                self.error(t.pos, f'function "{name}" not defined')
            if i + 1 < len(toks) and toks[i + 1].kind == "field" and toks[i + 1].attached:
                return _PipeArg(t.pos, _Pipe([], False, [[_Ident(t.pos, name)]], t.pos),
                                toks[i + 1].chain), i + 2
            return _Ident(t.pos, name), i + 1
        self.error(t.pos, f"unexpected {t.value!r} in {context}")


# -- values as Go prints them ----------------------------------------------------

def go_float(f: float) -> str:
    """Go's %v of a float64: the shortest digits that round-trip, in %e form when the
    decimal exponent is below -4 or at least 6 (so 4264000.0 prints "4.264e+06")."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    r = repr(f)
    sign = "-" if r.startswith("-") else ""
    r = r.lstrip("-")
    mant, _, exp = r.partition("e")
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    dp = len(ip) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    if not digits:
        return sign + "0"
    x = dp - 1
    if x < -4 or x >= 6:  # Go uses %e for shortest-precision %g/%v outside this range
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def go_str(v) -> str:
    """fmt.Sprint(v) for JSON-shaped values."""
    if isinstance(v, str):
        return v
    if v is None:
        return "<nil>"
    if v is NO_VALUE:
        return "<no value>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if hasattr(v, "template_json"):
        return "{" + " ".join(go_str(x) for x in v.template_json().values()) + "}"
    return str(v)


def _go_quote(s: str) -> str:
    import json
    return json.dumps(s, ensure_ascii=False)


def _go_type(v) -> str:
    if v is None or v is NO_VALUE:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return getattr(v, "type_name", type(v).__name__)


def truth(v) -> bool:
    """Go template truth: false, 0, nil, and empty strings/slices/maps are false."""
    if v is None or v is NO_VALUE:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


class Ordered(dict):
    """A mapping whose key order means something (a Go struct: fields in declaration
    order). Plain dicts stand for Go maps, which encoding/json writes key-sorted."""


def to_jsonable(v):
    if hasattr(v, "template_json"):
        v = v.template_json()
    if isinstance(v, Ordered):
        return {k: to_jsonable(x) for k, x in v.items()}
    if isinstance(v, dict):
        return {k: to_jsonable(v[k]) for k in sorted(v)}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if v is NO_VALUE:
        return None
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)  # Go's encoder writes 1e6 as 1000000
    return v


def json_compact(v) -> str:
    import json
    return json.dumps(to_jsonable(v), ensure_ascii=False, separators=(",", ":"))


# -- functions ------------------------------------------------------------------

class _FuncError(Exception):
    pass


def _f_and(*args):
    for a in args:
        if not truth(a):
            return a
    return args[-1]


def _f_or(*args):
    for a in args:
        if truth(a):
            return a
    return args[-1]


def _f_len(x):
    if isinstance(x, (str, list, tuple, dict)):
        return len(x)
    raise _FuncError(f"len of type {_go_type(x)}")


def _f_index(item, *indices):
    for idx in indices:
        if isinstance(item, dict):
            if not isinstance(idx, str):
                raise _FuncError(f"value has type {_go_type(idx)}; should be string")
            # A missing key yields the map's zero value; labels (map[string]string)
            # are what templates index, so that is "".
            item = item.get(idx, "")
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise _FuncError(f"cannot index slice/array with type {_go_type(idx)}")
            if not 0 <= idx < len(item):
                raise _FuncError(f"index out of range: {idx}")
            item = item[idx] if not isinstance(item, str) else ord(item[idx])
        elif item is None or item is NO_VALUE:
            raise _FuncError("index of untyped nil")
        else:
            raise _FuncError(f"can't index item of type {_go_type(item)}")
    return item


def _f_slice(item, *indices):
    if not isinstance(item, (str, list, tuple)):
        raise _FuncError(f"can't slice item of type {_go_type(item)}")
    if len(indices) > 2:
        raise _FuncError("too many slice indexes")
    lo = indices[0] if indices else 0
    hi = indices[1] if len(indices) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise _FuncError(f"index out of range: {hi if hi > len(item) else lo}")
    return item[lo:hi]


def _f_not(x):
    return not truth(x)


def _comparable(a, b):
    num = (int, float)
    if isinstance(a, bool) != isinstance(b, bool) or (
            isinstance(a, num) != isinstance(b, num)) or (isinstance(a, str) != isinstance(b, str)):
        raise _FuncError("incompatible types for comparison")


def _f_eq(a, *others):
    if not others:
        raise _FuncError("missing argument for comparison")
    for b in others:
        if a is not None and b is not None and a is not NO_VALUE and b is not NO_VALUE:
            _comparable(a, b)
        if a == b:
            return True
    return False


def _f_ne(a, b):
    return not _f_eq(a, b)


def _ordered(name):
    def compare(a, b):
        _comparable(a, b)
        if not isinstance(a, (int, float, str)) or isinstance(a, bool):
            raise _FuncError("invalid type for comparison")
        return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[name]
    return compare


def _f_print(*args):
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a))
    return "".join(out)


def _f_println(*args):
    return " ".join(go_str(a) for a in args) + "\n"


def go_sprintf(fmt: str, *args) -> str:
    """fmt.Sprintf for the verbs templates use (%s %v %d %q %t %x %X %o %b %c %f %e %g %%)."""
    out = []
    i, n, argi = 0, len(fmt), 0
    while i < n:
        c = fmt[i]
        if c != "%":
            j = fmt.find("%", i)
            j = n if j < 0 else j
            out.append(fmt[i:j])
            i = j
            continue
        j = i + 1
        flags = ""
        while j < n and fmt[j] in "+-# 0":
            flags += fmt[j]
            j += 1
        width = ""
        if j < n and fmt[j] == "*":
            width = str(args[argi]) if argi < len(args) else ""
            argi += 1
            j += 1
        while j < n and fmt[j].isdigit():
            width += fmt[j]
            j += 1
        prec = None
        if j < n and fmt[j] == ".":
            j += 1
            prec = ""
            while j < n and fmt[j].isdigit():
                prec += fmt[j]
                j += 1
        if j >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format_one(verb, flags, width, prec, arg))
    if argi < len(args):
        extra = ", ".join(f"{_go_type(a)}={go_str(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(text: str, flags: str, width: str, numeric: bool = False) -> str:
    if not width:
        return text
    w = int(width)
    if "-" in flags:
        return text.ljust(w)
    if "0" in flags and numeric:
        sign = text[0] if text[:1] in "+-" else ""
        return sign + text[len(sign):].rjust(w - len(sign), "0")
    return text.rjust(w)


def _format_one(verb, flags, width, prec, arg) -> str:
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    if verb in "vs":
        text = go_str(arg)
        if prec not in (None, "") and verb == "s":
            text = text[:int(prec)]
        return _pad(text, flags, width)
    if verb == "q":
        return _pad(_go_quote(arg) if isinstance(arg, str) else f"'{chr(arg)}'" if is_int
                    else f"%!q({_go_type(arg)}={go_str(arg)})", flags, width)
    if verb == "t":
        if isinstance(arg, bool):
            return _pad(go_str(arg), flags, width)
        return f"%!t({_go_type(arg)}={go_str(arg)})"
    if verb == "c" and is_int:
        return _pad(chr(arg), flags, width)
    if verb in "dxXob":
        if isinstance(arg, str) and verb in "xX":
            text = arg.encode().hex()
            return _pad(text.upper() if verb == "X" else text, flags, width)
        if not is_int:
            return f"%!{verb}({_go_type(arg)}={go_str(arg)})"
        spec = "%" + "".join(f for f in flags if f in "+ #") + ({"b": "d"}.get(verb, verb))
        text = spec % arg if verb != "b" else format(arg, "b")
        return _pad(text, flags, width, numeric=True)
    if verb in "feEgG" or verb == "F":
        if not isinstance(arg, (int, float)) or isinstance(arg, bool):
            return f"%!{verb}({_go_type(arg)}={go_str(arg)})"
        if verb in "gG" and prec is None:
            text = go_float(float(arg))
            text = text.upper() if verb == "G" else text
        else:
            p = 6 if prec in (None, "") else int(prec)
            text = ("%" + "".join(f for f in flags if f in "+ #") + f".{p}" + verb.lower()) % arg
            text = text.upper() if verb in "EG" else text
        return _pad(text, flags, width, numeric=True)
    return f"%!{verb}({_go_type(arg)}={go_str(arg)})"


def _f_title(s: str) -> str:
    out, prev_sep = [], True
    for c in s:
        out.append(c.upper() if prev_sep else c)
        prev_sep = not (c.isalnum() or c == "_")
    return "".join(out)


def _f_split(s: str, sep: str):
    return list(s) if sep == "" else s.split(sep)


def _f_join(items, sep: str) -> str:
    if isinstance(items, str):
        return items
    return sep.join(go_str(x) for x in items)


def _f_pad(s: str, prefix: int, suffix: int) -> str:
    return s if s == "" else " " * prefix + s + " " * suffix


def _f_truncate(s: str, length: int) -> str:
    return s if len(s) < length else s[:length]


def _f_upper(s):
    return go_str(s).upper()


def _f_lower(s):
    return go_str(s).lower()


FUNCS = {
    "and": _f_and, "or": _f_or, "not": _f_not, "len": _f_len, "index": _f_index,
    "slice": _f_slice, "print": _f_print, "printf": go_sprintf, "println": _f_println,
    "eq": _f_eq, "ne": _f_ne, "lt": _ordered("lt"), "le": _ordered("le"),
    "gt": _ordered("gt"), "ge": _ordered("ge"),
    # docker's additions (docker/cli templates.basicFunctions)
    "json": json_compact, "split": _f_split, "join": _f_join, "title": _f_title,
    "lower": _f_lower, "upper": _f_upper, "pad": _f_pad, "truncate": _f_truncate,
}


def _passthrough(v, *_):
    return v


# Table headers are rendered by running the row template on a map of header
# names; these keep the header text intact (docker's HeaderFunctions).
HEADER_FUNCS = dict(FUNCS, json=_passthrough, split=_passthrough, join=_passthrough,
                    title=_passthrough, lower=_passthrough, upper=_passthrough,
                    truncate=_passthrough)


# -- execution ------------------------------------------------------------------

class Template:
    def __init__(self, src: str, funcs: dict | None = None):
        self.src = src
        self.funcs = dict(FUNCS, **(funcs or {}))
        self.nodes = _Parser(src, _Lexer(src).run(), self.funcs).parse()

    def execute(self, data, *, header: bool = False, missingkey: str = "default") -> str:
        """Render with ``data`` as dot. missingkey="error" makes a missing map key an error."""
        state = _State(self, HEADER_FUNCS if header else self.funcs, missingkey, data)
        try:
            state.walk(self.nodes, data)
        except _ExecError as e:
            raise TemplateError(f'template: :{self._position(e.node)}: executing "" at '
                                f"<{_node_text(e.node)}>: {e.message}") from None
        return "".join(state.out)

    def _position(self, node) -> str:
        pos = getattr(node, "pos", 0)
        line = self.src.count("\n", 0, pos) + 1
        col = pos - (self.src.rfind("\n", 0, pos) + 1)
        return f"{line}:{col}"


def _node_text(node) -> str:
    text = getattr(node, "text", None)
    if text is None and hasattr(node, "pipe"):
        text = node.pipe.text
    return text or ""


def _arity_message(name: str, fn, got: int) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return f"wrong number of args for {name}: got {got}"
    want = code.co_argcount - len(getattr(fn, "__defaults__", None) or ())
    if code.co_flags & 0x04:  # *args
        return f"wrong number of args for {name}: want at least {want} got {got}"
    return f"wrong number of args for {name}: want {want} got {got}"


class _State:
    def __init__(self, tmpl: Template, funcs: dict, missingkey: str, data):
        self.tmpl = tmpl
        self.funcs = funcs
        self.missing_error = missingkey == "error"
        self.vars: list[list] = [["$", data]]
        self.out: list[str] = []

    def walk(self, nodes, dot) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.out.append(node)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(go_str(value))
            elif isinstance(node, _Branch):
                self.branch(node, dot)
            else:
                raise _Break() if node.kind == "break" else _Continue()

    def branch(self, node: _Branch, dot) -> None:
        mark = len(self.vars)
        try:
            if node.kind == "range":
                self.range_(node, dot)
                return
            value = self.pipe(node.pipe, dot)
            if truth(value):
                self.walk(node.body, value if node.kind == "with" else dot)
            else:
                self.walk(node.orelse, dot)
        finally:
            del self.vars[mark:]

    def range_(self, node: _Branch, dot) -> None:
        value = self.commands(node.pipe, dot)
        if value is None or value is NO_VALUE:
            items = []
        elif isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise _ExecError(node.pipe, f"range can't iterate over {go_str(value)}")
        decl = node.pipe.decl
        mark = len(self.vars)
        for key, elem in items:
            if len(decl) == 1:
                self.vars.append([decl[0], elem])
            elif len(decl) == 2:
                self.vars.append([decl[0], key])
                self.vars.append([decl[1], elem])
            try:
                self.walk(node.body, elem)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del self.vars[mark:]
        if not items:
            self.walk(node.orelse, dot)

    def pipe(self, pipe: _Pipe, dot):
        value = self.commands(pipe, dot)
        for name in pipe.decl:
            if pipe.assign:
                self.lookup_var(pipe, name)[1] = value
            else:
                self.vars.append([name, value])
        return value

    def commands(self, pipe: _Pipe, dot):
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value)
        return value

    def command(self, cmd: list, dot, final):
        first = cmd[0]
        if isinstance(first, _Ident):
            args = [self.arg(a, dot) for a in cmd[1:]]
            if final is not _MISSING:
                args.append(final)
            fn = self.funcs[first.name]
            try:
                return fn(*args)
            except _FuncError as e:
                raise _ExecError(first, f"error calling {first.name}: {e}") from None
            except TypeError:
                raise _ExecError(first, _arity_message(first.name, fn, len(args))) from None
            except (AttributeError, ValueError, IndexError) as e:
                raise _ExecError(first, f"error calling {first.name}: {e}") from None
        if len(cmd) > 1 or final is not _MISSING:
            method = self.arg(first, dot) if isinstance(first, _Field) else None
            if callable(method):  # a method with arguments: {{.Label "com.example.vendor"}}
                args = [self.arg(a, dot) for a in cmd[1:]]
                if final is not _MISSING:
                    args.append(final)
                try:
                    return method(*args)
                except TypeError:
                    raise _ExecError(first, _arity_message(first.text, method, len(args))) from None
            raise _ExecError(first, f"can't give argument to non-function {first.text}")
        return self.arg(first, dot)

    def arg(self, node, dot):
        if isinstance(node, _Field):
            return self.chain(node, dot, node.chain)
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Var):
            return self.chain(node, self.lookup_var(node, node.name)[1], node.chain)
        if isinstance(node, _PipeArg):
            return self.chain(node, self.commands(node.pipe, dot), node.chain)
        if isinstance(node, _Ident):  # a function used as an argument: call it bare
            return self.command([node], dot, _MISSING)
        raise _ExecError(node, "can't evaluate")

    def lookup_var(self, node, name: str) -> list:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry
        raise _ExecError(node, f'undefined variable "{name}"')

    def chain(self, node, value, chain):
        for name in chain:
            value = self.field(node, value, name)
        return value

    def field(self, node, value, name: str):
        if isinstance(value, dict):
            if name in value:
                return value[name]
            folded = name.lower()
            for key in value:
                if isinstance(key, str) and key.lower() == folded:
                    return value[key]
            if self.missing_error:
                raise _ExecError(node, f'map has no entry for key "{name}"')
            return NO_VALUE
        getter = getattr(value, "template_field", None)
        if getter is not None:
            try:
                return getter(name)
            except KeyError:
                raise _ExecError(node, f"can't evaluate field {name} in type "
                                 f"{getattr(value, 'type_name', type(value).__name__)}") from None
        if value is None or value is NO_VALUE:
            raise _ExecError(node, f"nil pointer evaluating interface {{}}.{name}")
        raise _ExecError(node, f"can't evaluate field {name} in type {_go_type(value)}")


def parse(src: str) -> Template:
    return Template(src)
