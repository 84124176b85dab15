"""The persistent interpreter behind ``PythonSession`` (runs inside the sandbox).

Reads framed ``{"code": ...}`` requests, runs each in one long-lived namespace, and answers
``{"value": repr-or-None, "error": traceback-or-None}``. stdout/stderr go straight to fds 1
and 2, which the agent collects, so output of child processes is captured too.
Like a notebook cell, a trailing bare expression is evaluated and its repr returned.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import struct
import sys
import traceback

_HDR = struct.Struct(">I")
_MAX_REPR = 4096


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = os.read(fd, n - len(buf))
        except InterruptedError:
            continue
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send(fd: int, obj: dict) -> None:
    data = json.dumps(obj).encode()
    data = _HDR.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except BaseException as e:  # a user's __repr__ may raise anything
        return f"<repr failed: {type(e).__name__}: {e}>"
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + f"... [{len(text) - _MAX_REPR} more characters]"
    return text


def _format_error(filename: str) -> str:
    etype, value, tb = sys.exc_info()
    # Drop our own frames: the agent should see only its code in the traceback.
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    return "".join(traceback.format_exception(etype, value, tb))


def run_cell(code: str, namespace: dict, counter: int) -> dict:
    filename = f"<cell {counter}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        tree = ast.parse(code, filename, "exec")
    except SyntaxError:
        return {"value": None, "error": "".join(traceback.format_exception_only(*sys.exc_info()[:2]))}
    last_expr = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last_expr = ast.Expression(tree.body.pop().value)
    try:
        exec(compile(tree, filename, "exec"), namespace)
        value = None
        if last_expr is not None:
            result = eval(compile(last_expr, filename, "eval"), namespace)
            if result is not None:
                namespace["_"] = result
                value = _short_repr(result)
        return {"value": value, "error": None}
    except SystemExit as e:
        return {"value": None, "error": f"SystemExit({e.code!r}) ignored: the session keeps running"}
    except BaseException:
        return {"value": None, "error": _format_error(filename)}
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass


def serve(ctl_r: int, ctl_w: int) -> None:
    sys.stdout = open(1, "w", closefd=False, encoding="utf-8", errors="replace", buffering=1)
    sys.stderr = open(2, "w", closefd=False, encoding="utf-8", errors="replace", buffering=1)
    sys.argv = [""]
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    counter = 0
    while True:
        try:
            hdr = _read_exact(ctl_r, 4)
            if hdr is None:
                return
            body = _read_exact(ctl_r, _HDR.unpack(hdr)[0])
            if body is None:
                return
            counter += 1
            reply = run_cell(json.loads(body)["code"], namespace, counter)
        except KeyboardInterrupt:
            # The interrupt landed between cells: report it rather than die.
            reply = {"value": None, "error": "KeyboardInterrupt"}
        _send(ctl_w, reply)
