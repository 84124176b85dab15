"""Verifiable rewards for agent episodes.

Every function here is pure: it reads its arguments (and, for :func:`sql_execution_match`, a
SQLite file opened read-only) and returns a float. None of them keeps state between calls, so
they are safe to call from many episodes at once.

Families:

* answers: :func:`math_equivalent` (math-verify with guards), :func:`normalize_answer`,
  :func:`exact_match`, :func:`token_f1`;
* SQL: :func:`sql_execution_match` (result-set comparison on a read-only database);
* format: :func:`format_reward` plus helpers for answer tags and ``\\boxed{}``;
* tool efficiency: :func:`otc_coefficient`, :func:`tool_efficiency_reward` (OTC, Wang et al.
  2025) and :func:`otc_group_rewards` for GRPO groups;
* gating: :class:`RewardTerm`, :func:`gated_reward`, :func:`gated_reward_breakdown`,
  :func:`gated_step_rewards` (G-RA, "Stabilizing Long-term Multi-turn RL with Gated Rewards");
* :func:`combine` for plain weighted sums.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import re
import signal
import sqlite3
import string
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = [
    "math_equivalent",
    "normalize_answer",
    "exact_match",
    "token_f1",
    "sql_execution_match",
    "sql_has_top_level_order_by",
    "format_reward",
    "tag_pattern",
    "answer_tag_reward",
    "boxed_reward",
    "extract_tag",
    "extract_boxed",
    "THINK_ANSWER_PATTERN",
    "otc_coefficient",
    "tool_efficiency_reward",
    "otc_optimal_calls",
    "otc_group_rewards",
    "RewardTerm",
    "gated_reward",
    "gated_reward_breakdown",
    "gated_step_rewards",
    "combine",
]


# --------------------------------------------------------------------------------------------
# Answer normalisation, EM and F1 (SQuAD conventions)
# --------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = frozenset(string.punctuation)


def _is_punct(ch: str) -> bool:
    # ASCII punctuation is what SQuAD strips; Unicode punctuation (curly quotes, dashes, CJK
    # full stops) is stripped too, because models emit it freely and it never carries the answer.
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(s: str) -> str:
    """SQuAD-style normalisation.

    ``lower -> drop punctuation (ASCII and Unicode P*) -> drop articles (a, an, the) ->
    collapse whitespace``. Punctuation is deleted, not replaced by a space, as in the official
    SQuAD script, so ``"don't"`` becomes ``"dont"`` and ``"1,000"`` becomes ``"1000"``.
    """
    if not isinstance(s, str):
        s = "" if s is None else str(s)
    s = s.lower()
    s = "".join(ch for ch in s if not _is_punct(ch))
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _as_gold_list(gold: str | Sequence[str]) -> list[str]:
    if isinstance(gold, str):
        return [gold]
    return [g for g in gold if isinstance(g, str)]


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """``max_g 1[normalize_answer(prediction) == normalize_answer(g)]``; 0.0 for no golds."""
    pred = normalize_answer(prediction)
    return max((1.0 if pred == normalize_answer(g) else 0.0 for g in _as_gold_list(gold)), default=0.0)


def _f1_tokens(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        # SQuAD convention: two empty answers agree, one empty answer scores nothing.
        return 1.0 if pred == gold else 0.0
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    p = same / len(pred)
    r = same / len(gold)
    return 2 * p * r / (p + r)


def token_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Token-level F1 after :func:`normalize_answer`, maximised over golds.

    With ``overlap = |multiset(pred tokens) ∩ multiset(gold tokens)|``,
    ``P = overlap / |pred|``, ``R = overlap / |gold|``, ``F1 = 2PR / (P + R)``
    (0 when overlap is 0; 1 when both token lists are empty).
    """
    pred = normalize_answer(prediction).split()
    return max((_f1_tokens(pred, normalize_answer(g).split()) for g in _as_gold_list(gold)), default=0.0)


# --------------------------------------------------------------------------------------------
# Math equivalence
# --------------------------------------------------------------------------------------------

logger = logging.getLogger(__name__)


class _Deadline(BaseException):
    """Raised by our SIGALRM handler.

    A BaseException on purpose: math-verify and sympy wrap their work in ``except Exception``,
    and a timeout they swallowed would let the rest of the (already over-budget) check go on.
    """


class _DropTimeoutDisabledWarning(logging.Filter):
    # math-verify warns once that its own timeout is off; we turn it off deliberately and
    # enforce our own deadline, so the warning would only mislead whoever reads the logs.
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


_MV: tuple[Any, Any] | None = None
_MV_FAILED = False
_MV_LOCK = threading.Lock()


def _math_verify() -> tuple[Any, Any] | None:
    """(parse, verify) from math-verify, imported on first use (sympy costs ~1 s to import)."""
    global _MV, _MV_FAILED
    if _MV is not None or _MV_FAILED:
        return _MV
    with _MV_LOCK:
        if _MV is None and not _MV_FAILED:
            try:
                from math_verify import parse, verify

                for name in ("math_verify.parser", "math_verify.grader"):
                    logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
                _MV = (parse, verify)
            except Exception:  # pragma: no cover - depends on the install
                logger.warning("math-verify unavailable; math_equivalent falls back to string compare")
                _MV_FAILED = True
    return _MV


@contextlib.contextmanager
def _wall_clock_limit(seconds: float | None) -> Iterator[bool]:
    """Raise :class:`_Deadline` in the block after ``seconds`` (main thread only).

    Yields whether a limit is armed. Signals reach only the main thread, so elsewhere nothing is
    armed and callers rely on input screening. Unlike math-verify's own ``signal.alarm`` guard,
    this one saves and restores an outer ITIMER_REAL (pytest-timeout, a trainer watchdog):
    an outer deadline that falls inside ours is honoured and re-fired right after.
    """
    if (
        seconds is None
        or seconds <= 0
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield False
        return
    try:
        prev_handler = signal.getsignal(signal.SIGALRM)
    except ValueError:  # not the main interpreter
        yield False
        return
    if prev_handler is None:  # installed from C: we could not put it back
        yield False
        return
    armed = [True]

    def _on_alarm(signum: int, frame: Any) -> None:
        if armed[0]:
            raise _Deadline()

    try:
        signal.signal(signal.SIGALRM, _on_alarm)
    except ValueError:
        yield False
        return
    start = time.monotonic()
    prev_delay, prev_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    if 0 < prev_delay < seconds:
        signal.setitimer(signal.ITIMER_REAL, prev_delay)
    try:
        yield True
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, prev_handler)
        if prev_delay > 0:
            remaining = prev_delay - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-3), prev_interval)


# Balanced-brace extraction: regexes cannot match nested braces, and \boxed{\frac{1}{2}} is
# the common case, not the exception.
_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _boxed_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the content of every closed ``\\boxed{...}``, in closing order (so the
    last one is the outermost box of the last group).

    One pass with a brace stack, so a turn full of unclosed ``\\boxed{`` stays linear.
    """
    spans: list[tuple[int, int]] = []
    stack: list[tuple[int, bool]] = []  # (content start, opened by \boxed)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            m = _BOXED_START.match(text, i)
            if m:
                stack.append((m.end(), True))
                i = m.end()
                continue
            i += 2  # an escaped brace (\{ or \}) neither opens nor closes
            continue
        if c == "{":
            stack.append((i + 1, False))
        elif c == "}" and stack:
            content_start, boxed = stack.pop()
            if boxed:
                spans.append((content_start, i))
        i += 1
    return spans


def extract_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` (or ``\\fbox{...}``), else None."""
    if not isinstance(text, str):
        return None
    spans = _boxed_spans(text)
    if not spans:
        return None
    a, b = spans[-1]
    return text[a:b]


def tag_pattern(tag: str = "answer") -> re.Pattern[str]:
    """``<tag>content</tag>`` where content contains no further ``<tag>``/``</tag>``."""
    t = re.escape(tag)
    return re.compile(rf"<{t}>((?:(?!</?{t}>).)*)</{t}>", re.DOTALL)


def extract_tag(text: str, tag: str = "answer") -> str | None:
    """Content of the last complete ``<tag>...</tag>`` pair, else None."""
    if not isinstance(text, str):
        return None
    found = tag_pattern(tag).findall(text)
    return found[-1] if found else None


_ANSWER_IS = re.compile(r"\banswer\s*(?:is\b|:|=)\s*:?\s*(.+)", re.IGNORECASE)


def _strip_wrappers(s: str) -> str:
    """Remove math delimiters and text-formatting macros but keep what they wrap."""
    s = s.strip()
    s = re.sub(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = s.replace("$", "")
    s = re.sub(r"\\[,;:!]|~", " ", s)
    # Markdown bold around the answer ("**42**"); an inner ** is Python's power, kept.
    s = re.sub(r"^\*\*|\*\*$", "", s.strip()).strip()
    while s and s[-1] in ".;,":
        s = s[:-1].rstrip()
    return s


def _answer_span(text: str) -> str:
    """The part of a response that states the answer, for string-level comparison.

    Priority: the last ``<answer>`` tag, the last ``\\boxed{}``, the text after the last
    "answer is"/"answer:" on its line, else the whole text.
    """
    tagged = extract_tag(text)
    if tagged is not None:
        inner = extract_boxed(tagged)
        return _strip_wrappers(inner if inner is not None else tagged)
    boxed = extract_boxed(text)
    if boxed is not None:
        return _strip_wrappers(boxed)
    last = None
    for last in _ANSWER_IS.finditer(text):
        pass
    if last is not None:
        return _strip_wrappers(last.group(1).splitlines()[0] if last.group(1) else "")
    return _strip_wrappers(text)


# Dates: math-verify reads "2024-03-01" as the arithmetic 2024 - 3 - 1 (or as 2024), so two
# different dates in the same year would compare equal. Dates are compared as dates instead.
_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}
_MONTH_RE = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE_PATTERNS = (
    re.compile(r"(?<!\d)(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?!\d)"),
    re.compile(_MONTH_RE + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})(?!\d)", re.IGNORECASE),
    re.compile(
        r"(?<!\d)(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH_RE + r",?\s+(?P<y>\d{4})(?!\d)",
        re.IGNORECASE,
    ),
)


def _date_from_match(m: re.Match[str]) -> _dt.date | None:
    g = m.groupdict()
    month = int(g["m"]) if g.get("m") else _MONTHS[g["mon"][:3].lower()]
    try:
        return _dt.date(int(g["y"]), month, int(g["d"]))
    except ValueError:
        return None


def _as_date(s: str) -> _dt.date | None:
    """The date ``s`` consists of, or None if ``s`` is not exactly one date."""
    s = s.strip()
    for pat in _DATE_PATTERNS:
        m = pat.fullmatch(s)
        if m:
            return _date_from_match(m)
    return None


def _last_date(s: str) -> _dt.date | None:
    best: tuple[int, _dt.date] | None = None
    for pat in _DATE_PATTERNS:
        for m in pat.finditer(s):
            d = _date_from_match(m)
            if d is not None and (best is None or m.start() >= best[0]):
                best = (m.start(), d)
    return best[1] if best else None


# Bare words that still read as mathematics ("sqrt(2)", "2 pi", "log 8"); any other run of two
# or more letters not introduced by a backslash makes a string "textual".
_MATH_WORDS = frozenset(
    """sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp sqrt pi infty
    inf oo mod pmod bmod gcd lcm min max det deg sgn abs floor ceil frac dfrac tfrac cdot times
    div pm mp le ge leq geq ne neq in cup cap to text mathrm mathbf left right boxed circ sum
    prod int lim binom dbinom choose emptyset varnothing""".split()
)
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed|\\fbox")

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)
_ABBREV = {w[:3]: w for w in _WEEKDAYS + _MONTH_NAMES}
_ABBREV.update({"tues": "tuesday", "thur": "thursday", "thurs": "thursday", "sept": "september"})
_CALENDAR_WORDS = frozenset(_WEEKDAYS + _MONTH_NAMES)


def _is_textual(s: str) -> bool:
    return any(w.lower() not in _MATH_WORDS for w in _WORD.findall(s))


def _words_equal(pred_span: str, gold: str) -> bool:
    g = normalize_answer(_strip_wrappers(gold))
    p = normalize_answer(pred_span)
    if not g:
        return False
    if p == g:
        return True
    # "Tue" for "Tuesday": only when the gold is a lone weekday/month name, so ordinary words
    # that happen to be abbreviations ("sat", "mar") are never rewritten elsewhere.
    if g in _CALENDAR_WORDS:
        return _ABBREV.get(p, p) == g
    return False


# Screening before sympy evaluates anything. Most pathological answers are short:
# "2^{2^{30}}" or "(10^{10})!" is ten characters that sympy turns into an exact integer with
# billions of digits inside C code that no signal can interrupt, so a timeout alone is not a
# defence and off the main thread there is no timeout at all.
_MAX_NODES = 2000
_MAX_EXPONENT_LOG10 = 4.0  # |exponent| or factorial argument up to 10^4
_MAX_RESULT_DIGITS = 4000.0  # estimated decimal digits of any exact numeric sub-term
_MAX_EXPANSION_TERMS = 500  # terms of a multinomial power once expanded
_MAX_SYMBOLIC_EXPONENT_LOG10 = 2.0  # |exponent| up to 100 over a compound symbolic base
_BINOMIAL = re.compile(r"\\[dt]?binom|binomial\s*\(|\\choose")
_BIG_ARGUMENT = re.compile(r"\d{5,}|\^|!|\*\*")


def _group_after(s: str, i: int, open_ch: str, close_ch: str) -> tuple[str, int]:
    """The balanced group starting at the first ``open_ch`` at or after ``i`` (or one token)."""
    while i < len(s) and s[i].isspace():
        i += 1
    if i >= len(s):
        return "", i
    if s[i] != open_ch:
        return s[i], i + 1
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_ch:
            depth += 1
        elif s[j] == close_ch:
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    return s[i + 1 :], len(s)


def _enclosing_group(s: str, i: int) -> str:
    """The innermost ``{...}`` around position ``i`` (for ``{n \\choose k}``)."""
    depth = 0
    start = 0
    for j in range(i - 1, -1, -1):
        if s[j] == "}":
            depth += 1
        elif s[j] == "{":
            if depth == 0:
                start = j + 1
                break
            depth -= 1
    end = s.find("}", i)
    return s[start : end if end >= 0 else len(s)]


def _raw_too_costly(s: str) -> bool:
    # latex2sympy and sympify evaluate binomials while parsing, before expression screening can
    # run, so each binomial's own arguments are checked for large or computed numbers.
    for m in _BINOMIAL.finditer(s):
        tok = m.group()
        if tok == "\\choose":
            args = _enclosing_group(s, m.start())
        elif tok.startswith("binomial"):
            args, _ = _group_after(s, m.end() - 1, "(", ")")
        else:
            first, nxt = _group_after(s, m.end(), "{", "}")
            second, _ = _group_after(s, nxt, "{", "}")
            args = first + " " + second
        if _BIG_ARGUMENT.search(args):
            return True
    return False


def _log10_mag(node: Any, cache: dict[int, float]) -> float:
    """Upper-bound estimate of log10 |value| for numeric sympy sub-terms (0 for symbols)."""
    key = id(node)
    if key in cache:
        return cache[key]
    import sympy

    val: float
    if isinstance(node, sympy.Integer):
        val = math.log10(abs(int(node.p))) if node.p else 0.0
    elif isinstance(node, sympy.Rational):
        val = math.log10(abs(int(node.p))) + math.log10(int(node.q))
    elif isinstance(node, sympy.Float):
        mpf = node._mpf_
        val = abs(mpf[2] + mpf[3]) * math.log10(2) if mpf[1] else 0.0
    elif isinstance(node, sympy.Pow):
        base, exp = node.args
        mb = _log10_mag(base, cache)
        me = _log10_mag(exp, cache)
        if base in (sympy.S.Zero, sympy.S.One, sympy.S.NegativeOne):
            val = 0.0
        elif me > 300:
            val = math.inf
        else:
            # Symbolic bases count as magnitude 1 so that x^(10^9) still reads as huge.
            val = max(abs(mb), 1.0 if not base.is_number else 0.0) * (10.0 ** me)
    elif isinstance(node, sympy.exp):
        ma = _log10_mag(node.args[0], cache)
        val = math.inf if ma > 300 else math.log10(math.e) * (10.0 ** ma)
    elif isinstance(node, (sympy.factorial, sympy.factorial2, sympy.subfactorial)):
        ma = _log10_mag(node.args[0], cache)
        val = math.inf if ma > 300 else (10.0 ** ma) * max(ma, 1.0)
    elif node.args:
        parts = [_log10_mag(a, cache) for a in node.args]
        val = sum(parts) if isinstance(node, sympy.Mul) else max(parts) + math.log10(len(parts))
    else:
        val = 1.0 if node.is_number else 0.0
    cache[key] = val
    return val


def _too_costly(obj: Any) -> bool:
    """Whether verifying ``obj`` risks an unbounded computation."""
    import sympy
    from sympy.matrices import MatrixBase

    if isinstance(obj, str):
        return False
    if isinstance(obj, MatrixBase):
        if obj.rows * obj.cols > 400:
            return True
        return any(_too_costly(x) for x in obj)
    if not isinstance(obj, sympy.Basic):
        return False
    cache: dict[int, float] = {}
    combinatorial = (sympy.factorial, sympy.factorial2, sympy.subfactorial, sympy.binomial, sympy.gamma)
    for count, node in enumerate(sympy.preorder_traversal(obj)):
        if count > _MAX_NODES:
            return True
        # Unevaluated sums, products and integrals get .doit() during comparison, which can run
        # for ever (sum of i^i to 10^9, an integral with no closed form).
        if isinstance(node, (sympy.Sum, sympy.Product, sympy.Integral)):
            return True
        if isinstance(node, sympy.Pow):
            base, exp = node.args
            if base not in (sympy.S.Zero, sympy.S.One, sympy.S.NegativeOne):
                if _log10_mag(exp, cache) > _MAX_EXPONENT_LOG10:
                    return True
                # (x+y+z)^60 is short to write but simplify expands it into ~1900 terms.
                if isinstance(base, sympy.Add) and isinstance(exp, sympy.Integer):
                    e, t = abs(int(exp)), len(base.args)
                    log_terms = math.lgamma(e + t) - math.lgamma(e + 1) - math.lgamma(t)
                    if log_terms > math.log(_MAX_EXPANSION_TERMS):
                        return True
                # sin(x)^1000 + cos(x)^1000 sends trigsimp into a search that does not end;
                # a plain symbol to a high power (x^2024) stays cheap.
                if not base.is_number and not isinstance(base, sympy.Symbol) and exp.is_number:
                    if _log10_mag(exp, cache) > _MAX_SYMBOLIC_EXPONENT_LOG10:
                        return True
        elif isinstance(node, sympy.exp) and _log10_mag(node.args[0], cache) > _MAX_EXPONENT_LOG10:
            return True
        elif isinstance(node, combinatorial) and any(
            _log10_mag(a, cache) > _MAX_EXPONENT_LOG10 for a in node.args
        ):
            return True
    # One bottom-up pass estimates every numeric sub-term; any of them too long to hold exactly
    # (or to print: CPython refuses int->str beyond 4300 digits) makes the whole thing costly.
    _log10_mag(obj, cache)
    return any(v > _MAX_RESULT_DIGITS for v in cache.values())


def _as_latex_body(s: str) -> str:
    """Rewrite a bare (undelimited) answer so that reading it as LaTeX keeps its meaning."""
    s = s.strip()
    # "1 000 000": LaTeX would read the spaces as multiplication.
    if re.fullmatch(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):
        s = s.replace(" ", "")
    s = re.sub(r"(?<!\\)%", r"\\%", s)  # % starts a LaTeX comment
    s = s.replace("**", "^")  # Python's power operator
    s = re.sub(r"(?<![\\A-Za-z])(pi|log|ln|sin|cos|tan|exp)(?![A-Za-z])", r"\\\1", s)
    s = re.sub(r"(?<![\\A-Za-z])(?:infinity|inf)(?![A-Za-z])", r"\\infty", s)
    return s


def _has_sympy(parsed: list[Any]) -> bool:
    return any(not isinstance(x, str) for x in parsed)


def _mv_parse(parse: Any, s: str) -> list[Any]:
    """math-verify parse of a gold or a prediction, with its timeout off (see _wall_clock_limit)."""
    if _DELIMITED.search(s) or _is_textual(s):
        return parse(s, parsing_timeout=None)
    # A bare expression: as plain text math-verify only picks out a number ("1+x" -> 1,
    # "x^2+1" -> nothing), read as LaTeX it keeps the whole expression.
    parsed = parse("$" + _as_latex_body(s) + "$", parsing_timeout=None)
    if _has_sympy(parsed):
        return parsed
    return parse(s, parsing_timeout=None)


def _light_norm(s: str) -> str:
    return re.sub(r"\s+", "", _strip_wrappers(s))


def _math_equivalent(prediction: str, gold: str, timeout_s: float | None, max_chars: int) -> bool:
    if not isinstance(prediction, str) or not isinstance(gold, str):
        return False
    gold = gold.strip()
    if not gold or not prediction.strip():
        return False
    # Final answers sit at the end of a response; the tail is what matters and what is cheap.
    pred = prediction[-max_chars:]
    span = _answer_span(pred)
    gold_core = _strip_wrappers(extract_boxed(gold) or gold)

    gold_date = _as_date(gold_core)
    if gold_date is not None:
        return _last_date(span) == gold_date

    if _light_norm(span) == _light_norm(gold_core) and _light_norm(gold_core):
        return True

    # A multiple-choice letter: normalize_answer would delete "A" as an article.
    choice = re.fullmatch(r"\(?([A-Z])\)", gold_core) or re.fullmatch(r"([A-Z])", gold_core)
    if choice:
        picked = re.fullmatch(r"\(?([A-Za-z])\)?", span.strip())
        return picked is not None and picked.group(1).upper() == choice.group(1)

    if _is_textual(gold_core):
        if _words_equal(span, gold_core):
            return True
        # Words alone are never handed to sympy: "ab" and "ba" would be equal products of
        # symbols. A textual gold with exactly one number ("5 cm") may still match numerically.
        if len(_NUMBER.findall(gold_core)) != 1:
            return False

    if len(gold) > max_chars:
        return False
    mv = _math_verify()
    if mv is None:
        return False
    parse, verify = mv
    if _raw_too_costly(gold) or _raw_too_costly(pred):
        return False
    with _wall_clock_limit(timeout_s):
        gold_parsed = _mv_parse(parse, gold)
        if not _has_sympy(gold_parsed) or any(_too_costly(x) for x in gold_parsed):
            return False
        # An <answer> tag is the agent's own statement of its answer: parse only that, so a
        # bare expression inside it ("x^2+1") is read as one expression, not picked apart.
        tagged = extract_tag(pred)
        pred_parsed = _mv_parse(parse, tagged if tagged is not None and tagged.strip() else pred)
        if not pred_parsed or any(_too_costly(x) for x in pred_parsed):
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def math_equivalent(
    prediction: str, gold: str, *, timeout_s: float | None = 5.0, max_chars: int = 2048
) -> float:
    """1.0 if ``prediction`` states an answer mathematically equal to ``gold``, else 0.0.

    Order of checks:

    1. a gold that is a date (``2024-03-01``, ``March 1, 2024``) is compared as a date with the
       last date in the prediction's answer span;
    2. the answer span (last ``<answer>`` tag, last ``\\boxed{}``, text after "answer is", or
       the whole text) equal to the gold after stripping delimiters/whitespace -> 1.0;
    3. a textual gold (a weekday, a name, a multiple-choice letter) is compared with
       :func:`normalize_answer` (weekday/month abbreviations accepted for a lone weekday/month);
       it reaches sympy only if it holds exactly one number (``"5 cm"``);
    4. otherwise math-verify ``parse``/``verify`` of the gold and of the prediction (its
       ``<answer>`` content when it has one; a bare expression is read as LaTeX): fractions vs
       decimals (``1/2`` == ``0.5``), LaTeX, sets, intervals, symbolic equality; integers
       compare exactly at any size.

    Guards: only the last ``max_chars`` characters of the prediction are read; parsed
    expressions that could explode (huge exponents, factorials, binomials, unevaluated
    sums/integrals, over 2000 nodes) score 0.0 before sympy evaluates them; on the main thread
    the whole check runs under a ``timeout_s`` wall-clock limit (SIGALRM via setitimer, which
    restores any outer timer). math-verify's own signal timeouts are always off, so this is safe
    from worker threads, where no wall-clock limit exists and the screening is the guard.
    Never raises: anything unparseable, too costly or timed out scores 0.0.
    """
    try:
        return 1.0 if _math_equivalent(prediction, gold, timeout_s, max_chars) else 0.0
    except _Deadline:
        logger.debug("math_equivalent timed out")
        return 0.0
    except Exception:
        logger.debug("math_equivalent failed", exc_info=True)
        return 0.0


# --------------------------------------------------------------------------------------------
# SQL execution match
# --------------------------------------------------------------------------------------------

_SQL_MASK = re.compile(
    r"--[^\n]*|/\*.*?(?:\*/|$)|'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|`[^`]*`?|\[[^\]]*\]?",
    re.DOTALL,
)


def sql_has_top_level_order_by(sql: str) -> bool:
    """Whether ``sql`` ends in an ORDER BY of its outermost query.

    Comments, string literals and quoted identifiers are masked first; ORDER BY inside
    parentheses (subqueries, CTE bodies, window ``OVER (...)`` clauses) does not count.
    """
    masked = _SQL_MASK.sub(" ", sql)
    depth = 0
    top = []
    for ch in masked:
        if ch == "(":
            depth += 1
            top.append(" ")
        elif ch == ")":
            depth = max(depth - 1, 0)
            top.append(" ")
        else:
            top.append(ch if depth == 0 else " ")
    return re.search(r"\border\s+by\b", "".join(top), re.IGNORECASE) is not None


def _norm_value(v: Any) -> Any:
    # ints and integral floats become the same int, other floats are rounded to 1e-6, so that
    # SUM over REAL vs INTEGER columns or AVG computed two ways compare equal.
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        if math.isfinite(v) and v.is_integer():
            return int(v)
        if math.isfinite(v):
            r = round(v, 6)
            return int(r) if r.is_integer() else r
        return v
    return v


class _SQLTimeout(Exception):
    pass


class _SQLTooManyRows(Exception):
    pass


_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def _deny_all_but_reads(action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
    # Read-only mode already refuses writes; the authorizer also refuses ATTACH (reading other
    # files on the host), PRAGMA (flipping query_only back) and transactions.
    return sqlite3.SQLITE_OK if action in _ALLOWED_ACTIONS else sqlite3.SQLITE_DENY


def _open_ro(db_path: str | Path) -> sqlite3.Connection:
    path = Path(db_path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"SQLite database not found: {path}")
    conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=1.0)
    conn.execute("PRAGMA query_only=ON")
    if hasattr(conn, "setlimit"):
        # One value can be no larger than 16 MiB: randomblob(1e9) would otherwise allocate a
        # gigabyte inside a single VM step, where the progress handler cannot stop it.
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 16 * 1024 * 1024)
    return conn


def _run_query(
    conn: sqlite3.Connection, sql: str, timeout_s: float, max_rows: int
) -> tuple[int, list[tuple[Any, ...]]]:
    deadline = time.monotonic() + timeout_s
    timed_out = [False]

    def _progress() -> int:
        if time.monotonic() > deadline:
            timed_out[0] = True
            return 1
        return 0

    conn.set_progress_handler(_progress, 1000)
    try:
        try:
            cur = conn.execute(sql)
            if cur.description is None:
                raise sqlite3.ProgrammingError("statement returns no result set")
            rows: list[tuple[Any, ...]] = []
            while True:
                chunk = cur.fetchmany(512)
                if not chunk:
                    break
                rows.extend(chunk)
                if len(rows) > max_rows:
                    raise _SQLTooManyRows(f"more than {max_rows} rows")
        except sqlite3.OperationalError:
            if timed_out[0]:
                raise _SQLTimeout(f"query exceeded {timeout_s} s") from None
            raise
        return len(cur.description), [tuple(_norm_value(v) for v in row) for row in rows]
    finally:
        conn.set_progress_handler(None, 0)


def _column_permutations(
    gold: list[tuple], pred: list[tuple], ncols: int, ordered: bool
) -> Iterator[tuple[int, ...]]:
    """Column orders of ``pred`` worth trying: columns may only map to equal value-multisets."""

    def sig(rows: list[tuple], j: int) -> Any:
        col = [r[j] for r in rows]
        return tuple(col) if ordered else frozenset(Counter(col).items())

    gsig = [sig(gold, j) for j in range(ncols)]
    psig = [sig(pred, j) for j in range(ncols)]
    candidates = [[k for k in range(ncols) if psig[k] == gsig[j]] for j in range(ncols)]
    if any(not c for c in candidates):
        return
    tried = 0
    for combo in product(*candidates):
        if len(set(combo)) != ncols:
            continue
        tried += 1
        if tried > 5000:  # pathological ties; give up rather than burn the episode's time
            return
        yield combo


def sql_execution_match(
    pred_sql: str,
    gold_sql: str,
    db_path: str | Path,
    *,
    ordered: bool | None = None,
    timeout_s: float = 5.0,
    max_rows: int = 10000,
    ignore_column_order: bool = False,
) -> float:
    """1.0 if ``pred_sql`` returns the same result as ``gold_sql`` on ``db_path``, else 0.0.

    Both run on a connection opened ``file:...?mode=ro`` with ``PRAGMA query_only=ON``; the
    prediction additionally runs under an authorizer allowing only reads (no ATTACH, PRAGMA or
    transactions). Values are normalised (integral floats -> int, other floats rounded to 6
    decimals) and rows compared as tuples, so column order matters unless
    ``ignore_column_order`` (then any column permutation that makes the results equal counts).
    Results compare as lists when ``ordered`` is True, as multisets of rows when False, and
    when ``ordered`` is None as lists iff the gold has a top-level ORDER BY (ties in the sort
    key can then make equivalent queries differ; that is the usual execution-match caveat).

    The prediction scores 0.0 when it errors, writes (refused), is not a query, runs past
    ``timeout_s`` (a progress handler aborts it) or returns more than ``max_rows`` rows.
    A gold that fails in any of those ways raises ValueError: a broken task is a bug, not the
    agent's fault. A missing database raises FileNotFoundError.
    """
    conn = _open_ro(db_path)
    try:
        try:
            gold_ncols, gold_rows = _run_query(conn, gold_sql, timeout_s, max_rows)
        except (sqlite3.Error, sqlite3.Warning, _SQLTimeout, _SQLTooManyRows) as e:
            raise ValueError(f"gold SQL failed: {e}") from e
        if not isinstance(pred_sql, str) or not pred_sql.strip():
            return 0.0
        conn.set_authorizer(_deny_all_but_reads)
        try:
            pred_ncols, pred_rows = _run_query(conn, pred_sql, timeout_s, max_rows)
        except (sqlite3.Error, sqlite3.Warning, _SQLTimeout, _SQLTooManyRows, ValueError, OverflowError):
            return 0.0
        finally:
            conn.set_authorizer(None)
    finally:
        conn.close()

    if ordered is None:
        ordered = sql_has_top_level_order_by(gold_sql)
    if len(gold_rows) != len(pred_rows):
        return 0.0
    if gold_ncols != pred_ncols:
        return 0.0
    if ordered:
        same = lambda g, p: g == p  # noqa: E731
    else:
        same = lambda g, p: Counter(g) == Counter(p)  # noqa: E731
    if same(gold_rows, pred_rows):
        return 1.0
    if not ignore_column_order:
        return 0.0
    for perm in _column_permutations(gold_rows, pred_rows, gold_ncols, ordered):
        permuted = [tuple(row[k] for k in perm) for row in pred_rows]
        if same(gold_rows, permuted):
            return 1.0
    return 0.0


# --------------------------------------------------------------------------------------------
# Format
# --------------------------------------------------------------------------------------------

THINK_ANSWER_PATTERN = re.compile(
    r"\s*<think>(?:(?!</?think>).)*</think>\s*<answer>(?:(?!</?answer>).)*</answer>\s*", re.DOTALL
)
"""A whole turn made of one ``<think>`` block then one ``<answer>`` block (use ``fullmatch=True``)."""


def format_reward(
    text: str,
    *,
    pattern: str | re.Pattern[str],
    flags: int = re.DOTALL,
    min_count: int = 1,
    max_count: int | None = 1,
    fullmatch: bool = False,
) -> float:
    """1.0 if ``text`` has the required format, else 0.0.

    With ``fullmatch`` the whole text must match ``pattern``. Otherwise the number ``n`` of
    non-overlapping matches must satisfy ``min_count <= n <= max_count`` (``max_count=None``:
    no upper bound); the defaults ask for exactly one. ``flags`` apply only to a str pattern.
    """
    if not isinstance(text, str):
        return 0.0
    pat = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
    if fullmatch:
        return 1.0 if pat.fullmatch(text) else 0.0
    n = sum(1 for _ in pat.finditer(text))
    if n < min_count or (max_count is not None and n > max_count):
        return 0.0
    return 1.0


def answer_tag_reward(text: str, tag: str = "answer", *, allow_empty: bool = False) -> float:
    """1.0 iff ``<tag>`` and ``</tag>`` each occur exactly once, in that order, around
    non-blank content (blank allowed with ``allow_empty``); stray tags fail the format."""
    if not isinstance(text, str):
        return 0.0
    opens = text.count(f"<{tag}>")
    closes = text.count(f"</{tag}>")
    if opens != 1 or closes != 1:
        return 0.0
    content = extract_tag(text, tag)
    if content is None:
        return 0.0
    return 1.0 if allow_empty or content.strip() else 0.0


def boxed_reward(text: str, *, exactly_one: bool = True) -> float:
    """1.0 iff the text holds a balanced non-empty ``\\boxed{...}`` (exactly one by default)."""
    if not isinstance(text, str):
        return 0.0
    spans = [(a, b) for a, b in _boxed_spans(text) if text[a:b].strip()]
    # An unbalanced \boxed{ counts against "exactly one": the model wrote two attempts.
    starts = len(_BOXED_START.findall(text))
    if not spans:
        return 0.0
    if exactly_one and (len(spans) != 1 or starts != 1):
        return 0.0
    return 1.0


# --------------------------------------------------------------------------------------------
# Tool efficiency (OTC)
# --------------------------------------------------------------------------------------------


def otc_coefficient(
    n_calls: int, optimal_calls: int, *, smooth: float = 6.0, penalize_fewer: bool = True
) -> float:
    """OTC tool-use coefficient in [0, 1] for ``n`` calls when ``m`` calls are optimal.

    From OTC-GRPO (Wang et al. 2025, "Acting Less is Reasoning More"):

    * ``m == 0 and n == 0``: 1;
    * ``m == 0``: ``cos(n * pi / (2n + c))``, with ``c = smooth``; 1 at n=0, falling towards
      0 as n grows (c=6: n=1 -> cos(pi/8) = 0.9239, n=2 -> cos(pi/5) = 0.8090);
    * ``m > 0``: ``sin(f(m, n) * pi / (2m))`` with ``f(m, n) = 2mn / (m + n)`` (the harmonic
      mean, so f(m, m) = m, f(m, 0) = 0, f -> 2m as n -> inf): 1 at n = m, 0 at n = 0 and
      as n -> inf; e.g. m=1,n=2 -> sin(2pi/3) = 0.8660, m=2,n=6 -> sin(3pi/4) = 0.7071.

    ``penalize_fewer=False`` treats n < m as n = m (coefficient 1): useful when ``m`` is an
    external estimate rather than the group minimum, so doing better than it is not punished.
    """
    n = int(n_calls)
    m = int(optimal_calls)
    if n < 0 or m < 0:
        raise ValueError(f"tool call counts must be >= 0, got n={n}, m={m}")
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    if n == m:
        return 1.0
    if m == 0:
        return math.cos(n * math.pi / (2 * n + smooth))
    if n < m and not penalize_fewer:
        return 1.0
    f = 2.0 * m * n / (m + n)
    return max(0.0, math.sin(f * math.pi / (2 * m)))


def tool_efficiency_reward(
    correct: float,
    n_calls: int,
    optimal_calls: int,
    *,
    smooth: float = 6.0,
    alpha: float = 1.0,
    penalize_fewer: bool = True,
) -> float:
    """OTC tool-integrated reward: ``alpha * otc_coefficient(n, m) * correct`` when correct > 0.

    A non-positive ``correct`` (wrong answer, or a negative format penalty) is returned
    unchanged: scaling it by the coefficient would make extra tool calls *soften* a penalty.
    See :func:`otc_coefficient` for the coefficient.
    """
    if correct <= 0:
        return float(correct)
    coef = otc_coefficient(n_calls, optimal_calls, smooth=smooth, penalize_fewer=penalize_fewer)
    return alpha * coef * float(correct)


def otc_optimal_calls(
    n_calls: Sequence[int], correct: Sequence[float], *, solved_at: float = 1.0
) -> int | None:
    """OTC-GRPO's estimate of the optimal call count for one prompt's group of rollouts:
    the fewest calls among rollouts with ``correct >= solved_at``; None if none solved it."""
    if len(n_calls) != len(correct):
        raise ValueError("n_calls and correct must have the same length")
    solved = [int(n) for n, c in zip(n_calls, correct) if c >= solved_at]
    return min(solved) if solved else None


def otc_group_rewards(
    correct: Sequence[float],
    n_calls: Sequence[int],
    *,
    smooth: float = 6.0,
    alpha: float = 1.0,
    solved_at: float = 1.0,
) -> list[float]:
    """:func:`tool_efficiency_reward` for every rollout of one prompt, with ``m`` from
    :func:`otc_optimal_calls`. If no rollout solved the prompt there is nothing to calibrate
    against and the correctness rewards come back unchanged."""
    m = otc_optimal_calls(n_calls, correct, solved_at=solved_at)
    if m is None:
        return [float(c) for c in correct]
    return [
        tool_efficiency_reward(c, n, m, smooth=smooth, alpha=alpha) for c, n in zip(correct, n_calls)
    ]


# --------------------------------------------------------------------------------------------
# Gated Reward Accumulation (G-RA)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardTerm:
    """One reward component for :func:`gated_reward`; ``value >= threshold`` opens its gate."""

    name: str
    value: float
    threshold: float
    weight: float = 1.0


def _check_terms(terms: Sequence[RewardTerm]) -> None:
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"reward term names must be unique, got {names}")
    if "total" in names:
        raise ValueError("'total' is reserved for the breakdown's sum")
    for t in terms:
        if not (math.isfinite(t.value) and math.isfinite(t.weight)) or math.isnan(t.threshold):
            raise ValueError(f"reward term {t.name!r} has a non-finite value/weight/threshold: {t}")


def gated_reward_breakdown(terms: Sequence[RewardTerm]) -> dict[str, float]:
    """Per-term view of :func:`gated_reward`, flat so that it logs directly.

    Keys: ``"total"``; for each term ``name`` its contribution (``weight * value`` if counted,
    else 0.0), ``name + "/counted"`` and ``name + "/met"`` (1.0 or 0.0).
    """
    _check_terms(terms)
    out: dict[str, float] = {"total": 0.0}
    gate_open = True
    for t in terms:
        met = t.value >= t.threshold
        contribution = t.weight * t.value if gate_open else 0.0
        out[t.name] = contribution
        out[f"{t.name}/counted"] = 1.0 if gate_open else 0.0
        out[f"{t.name}/met"] = 1.0 if met else 0.0
        out["total"] += contribution
        gate_open = gate_open and met
    return out


def gated_reward(terms: Sequence[RewardTerm]) -> float:
    """G-RA: ``sum_i [all_{j<i} v_j >= thr_j] * w_i * v_i`` over terms in priority order.

    Terms are listed highest priority first. The first term always counts; each later term
    counts only if every term before it met its threshold, so a lower-priority reward
    (format, intermediate progress) can never pay out while a higher one (the outcome) fails.
    """
    return gated_reward_breakdown(terms)["total"]


def gated_step_rewards(outcome: float, step_rewards: Sequence[float], threshold: float) -> list[float]:
    """G-RA for per-step rewards: ``step_rewards`` if ``outcome >= threshold``, else zeros.

    Keeps step-level shaping from being accumulated on trajectories whose long-horizon
    outcome failed, which is what lets a policy farm step rewards without finishing the task.
    """
    if outcome >= threshold:
        return [float(r) for r in step_rewards]
    return [0.0] * len(step_rewards)


def combine(*weighted: tuple[float, float]) -> float:
    """``sum_k weight_k * value_k`` over ``(weight, value)`` pairs; 0.0 for none."""
    return float(sum(w * v for w, v in weighted))
