"""Reference solutions for the ``math`` task set, written as an agent would write them.

``solution_code(task)`` returns a short Python program that *computes* the task's answer from
the task's parameters and prints it in the canonical answer format (digits, ``p/q`` in lowest
terms, ISO dates, weekday names, ``2 × 3 × 7``). The parameters are written into the program
as literals, the way an agent copies numbers from the question into the interpreter; the
answer itself never is. Uses: a scripted expert for SFT warm-up and env smoke tests, and an
independent re-check of every stored answer (``tests/test_math_solutions.py``).

``expert_turns(task)`` / ``expert_answer_turn(tool_output)`` are the two assistant turns of
that expert in the Qwen/Hermes tool-call format: call ``python`` with the program, then call
``answer`` with the last line it printed.

Parameters come from ``metadata.params`` (and ``metadata.extra``). For reasoning-gym items
whose parameters are missing, they are parsed back from the question text.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

# --- helpers -----------------------------------------------------------------------------------


def _load(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    return json.loads(value)


def _date_lit(iso: str) -> str:
    y, m, d = (int(x) for x in iso.split("-"))
    return f"date({y}, {m}, {d})"


def _code(*lines: str) -> str:
    return "\n".join(lines) + "\n"


_SIEVE = (
    "def sieve(limit):",
    "    is_prime = bytearray([1]) * (limit + 1)",
    "    is_prime[0:2] = b'\\x00\\x00'",
    "    for i in range(2, int(limit ** 0.5) + 1):",
    "        if is_prime[i]:",
    "            is_prime[i * i :: i] = bytearray(len(range(i * i, limit + 1, i)))",
    "    return is_prime",
)

_FACTORIZE = (
    "def factorize(n):",
    "    factors = {}",
    "    p = 2",
    "    while p * p <= n:",
    "        while n % p == 0:",
    "            factors[p] = factors.get(p, 0) + 1",
    "            n //= p",
    "        p += 1 if p == 2 else 2",
    "    if n > 1:",
    "        factors[n] = factors.get(n, 0) + 1",
    "    return factors",
)


# --- our own families --------------------------------------------------------------------------


def _bigint_mul(p: dict, x: dict, q: str) -> str:
    if p["op"] == "mul_sub":
        return _code(f"a = {p['a']}", f"b = {p['b']}", f"c = {p['c']}", "print(a * b - c)")
    return _code(f"a = {p['a']}", f"b = {p['b']}", "print(a * b)")


def _bigint_power(p: dict, x: dict, q: str) -> str:
    return _code(f"print({p['base']} ** {p['exp']})")


def _digit_sum(p: dict, x: dict, q: str) -> str:
    if p["kind"] == "factorial":
        return _code("import math", "", f"value = math.factorial({p['n']})",
                     "print(sum(int(d) for d in str(value)))")
    return _code(f"value = {p['base']} ** {p['exp']}", "print(sum(int(d) for d in str(value)))")


def _modexp(p: dict, x: dict, q: str) -> str:
    return _code(f"print(pow({p['a']}, {p['e']}, {p['m']}))")


def _modinv(p: dict, x: dict, q: str) -> str:
    return _code(f"a, m = {p['a']}, {p['m']}", "x = pow(a, -1, m)", "assert a * x % m == 1",
                 "print(x)")


def _crt(p: dict, x: dict, q: str) -> str:
    return _code(
        f"residues = {p['residues']}",
        f"moduli = {p['moduli']}",
        "x, M = 0, 1",
        "for r, m in zip(residues, moduli):",
        "    # lift the solution so far to also satisfy x = r (mod m)",
        "    t = (r - x) * pow(M, -1, m) % m",
        "    x, M = x + M * t, M * m",
        "assert all(x % m == r for r, m in zip(residues, moduli))",
        "print(x % M)",
    )


def _nth_prime(p: dict, x: dict, q: str) -> str:
    return _code(
        "import math",
        "from itertools import compress",
        "",
        *_SIEVE,
        "",
        f"n = {p['n']}",
        "limit = int(n * (math.log(n) + math.log(math.log(n)))) + 10  # p_n < this for n >= 6",
        "primes = list(compress(range(limit + 1), sieve(limit)))",
        "print(primes[n - 1])",
    )


def _prime_sum(p: dict, x: dict, q: str) -> str:
    return _code(
        "from itertools import compress",
        "",
        *_SIEVE,
        "",
        f"lo, hi = {p['lo']}, {p['hi']}",
        "is_prime = sieve(hi)",
        "print(sum(compress(range(lo, hi + 1), is_prime[lo:hi + 1])))",
    )


def _divisor_function(p: dict, x: dict, q: str) -> str:
    last = {
        "count": ("result = 1", "for p, e in f.items():", "    result *= e + 1"),
        "sum": ("result = 1", "for p, e in f.items():",
                "    result *= (p ** (e + 1) - 1) // (p - 1)"),
        "totient": ("result = 1", "for p, e in f.items():", "    result *= p ** (e - 1) * (p - 1)"),
    }[p["kind"]]
    return _code(*_FACTORIZE, "", f"f = factorize({p['n']})", *last, "print(result)")


def _gcd_big(p: dict, x: dict, q: str) -> str:
    return _code("import math", "", f"print(math.{p['op']}({p['a']}, {p['b']}))")


def _binomial(p: dict, x: dict, q: str) -> str:
    if p["kind"] == "choose":
        return _code("import math", "", f"print(math.comb({p['n']}, {p['k']}))")
    return _code(
        "import math",
        "",
        "# (a*x + b)^n: the x^k term is C(n, k) * a^k * b^(n-k)",
        f"a, b, n, k = {p['a']}, {p['b']}, {p['n']}, {p['k']}",
        "print(math.comb(n, k) * a ** k * b ** (n - k))",
    )


def _arrangements(p: dict, x: dict, q: str) -> str:
    return _code(
        "import math",
        "from collections import Counter",
        "",
        f"word = {p['letters']!r}",
        "total = math.factorial(len(word))",
        "for c in Counter(word).values():",
        "    total //= math.factorial(c)",
        "print(total)",
    )


def _stars_and_bars(p: dict, x: dict, q: str) -> str:
    return _code(
        "import math",
        "",
        f"k, n, lower = {p['k']}, {p['n']}, {p['lower']}",
        "m = n - k * lower  # substitute y_i = x_i - lower >= 0",
        "print(math.comb(m + k - 1, k - 1) if m >= 0 else 0)",
    )


def _divisible_count(p: dict, x: dict, q: str) -> str:
    return _code(
        "import math",
        "from itertools import combinations",
        "",
        f"N = {p['limit']}",
        f"divs = {p['divs']}",
        "total = 0",
        "for r in range(1, len(divs) + 1):  # inclusion-exclusion",
        "    for subset in combinations(divs, r):",
        "        total += (-1) ** (r + 1) * (N // math.lcm(*subset))",
        "print(total)",
    )


def _derangements(p: dict, x: dict, q: str) -> str:
    return _code(
        f"n = {p['n']}",
        "d = [1, 0]  # D(0), D(1)",
        "for i in range(2, n + 1):",
        "    d.append((i - 1) * (d[i - 1] + d[i - 2]))",
        "print(d[n])",
    )


_VAR_NAMES = ["x", "y", "z", "w"]


def _linear_system(p: dict, x: dict, q: str) -> str:
    n = len(p["matrix"])
    asked = x.get("asked")
    if asked is None:
        m = re.search(r"value of (\w+)\?", q)
        if not m:
            raise ValueError("linear_system: cannot tell which variable is asked for")
        asked = m.group(1)
    names = _VAR_NAMES[:n]
    return _code(
        "from fractions import Fraction",
        "",
        f"A = {p['matrix']}",
        f"b = {p['rhs']}",
        "n = len(A)",
        "M = [[Fraction(v) for v in row] + [Fraction(r)] for row, r in zip(A, b)]",
        "for col in range(n):  # Gauss-Jordan elimination",
        "    piv = next(r for r in range(col, n) if M[r][col] != 0)",
        "    M[col], M[piv] = M[piv], M[col]",
        "    M[col] = [v / M[col][col] for v in M[col]]",
        "    for r in range(n):",
        "        if r != col and M[r][col] != 0:",
        "            M[r] = [a - M[r][col] * c for a, c in zip(M[r], M[col])]",
        f"sol = dict(zip({names!r}, (row[-1] for row in M)))",
        f"print(sol[{asked!r}])",
    )


def _fraction_sum(p: dict, x: dict, q: str) -> str:
    terms = ", ".join(f"Fraction({a}, {b})" for a, b in p["terms"])
    return _code(
        "from fractions import Fraction",
        "",
        f"total = sum([{terms}])",
        "print(f'{total.numerator}/{total.denominator}')",
    )


def _days_between(p: dict, x: dict, q: str) -> str:
    return _code("from datetime import date", "",
                 f"print(({_date_lit(p['b'])} - {_date_lit(p['a'])}).days)")


def _weekday(p: dict, x: dict, q: str) -> str:
    return _code(
        "from datetime import date",
        "",
        "names = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday']",
        f"print(names[{_date_lit(p['date'])}.weekday()])",
    )


def _date_add(p: dict, x: dict, q: str) -> str:
    return _code("from datetime import date, timedelta", "",
                 f"print(({_date_lit(p['date'])} + timedelta(days={p['offset']})).isoformat())")


# --- reasoning-gym families --------------------------------------------------------------------

_EXPR = re.compile(r"[-+*/()\d\s]*\d[-+*/()\d\s]*")


def _expression(p: dict, q: str) -> str:
    if "expression" in p:
        return str(p["expression"])
    # The longest run of digits, operators, brackets and spaces in the question.
    runs = [m.group().strip() for m in _EXPR.finditer(q)]
    runs = [r for r in runs if re.search(r"\d\s*[-+*/]\s*[-(\d]", r)]
    if not runs:
        raise ValueError(f"no arithmetic expression found in {q!r}")
    return max(runs, key=len)


def _numbers(p: dict, q: str) -> list[int]:
    if "numbers" in p:
        return [int(v) for v in p["numbers"]]
    m = re.search(r"numbers:\s*([\d,\s]+)", q)
    if not m:
        raise ValueError(f"no number list found in {q!r}")
    return [int(v) for v in re.findall(r"\d+", m.group(1))]


def _rg_arithmetic(p: dict, x: dict, q: str) -> str:
    return _code(f"print({_expression(p, q)})")


def _rg_gcd(p: dict, x: dict, q: str) -> str:
    return _code("import math", "", f"print(math.gcd(*{_numbers(p, q)}))")


def _rg_lcm(p: dict, x: dict, q: str) -> str:
    return _code("import math", "", f"print(math.lcm(*{_numbers(p, q)}))")


def _rg_prime_factorization(p: dict, x: dict, q: str) -> str:
    if "number" in p:
        n = int(p["number"])
    else:
        m = re.search(r"factorization of (\d+)", q)
        if not m:
            raise ValueError(f"no number found in {q!r}")
        n = int(m.group(1))
    return _code(
        f"n = {n}",
        "factors = []",
        "p = 2",
        "while p * p <= n:",
        "    while n % p == 0:",
        "        factors.append(p)",
        "        n //= p",
        "    p += 1 if p == 2 else 2",
        "if n > 1:",
        "    factors.append(n)",
        "print(' × '.join(map(str, factors)))",
    )


def _rg_count_primes(p: dict, x: dict, q: str) -> str:
    if "start" in p and "end" in p:
        lo, hi = int(p["start"]), int(p["end"])
    else:
        m = re.search(r"between (\d+) and (\d+)", q)
        if not m:
            raise ValueError(f"no range found in {q!r}")
        lo, hi = int(m.group(1)), int(m.group(2))
    return _code(*_SIEVE, "", f"lo, hi = {lo}, {hi}", "is_prime = sieve(hi)",
                 "print(sum(is_prime[lo:hi + 1]))")


def _rg_fraction_simplification(p: dict, x: dict, q: str) -> str:
    if "numerator" in p and "denominator" in p:
        a, b = int(p["numerator"]), int(p["denominator"])
    else:
        m = re.search(r"(-?\d+)\s*/\s*(\d+)", q)
        if not m:
            raise ValueError(f"no fraction found in {q!r}")
        a, b = int(m.group(1)), int(m.group(2))
    return _code("from fractions import Fraction", "", f"f = Fraction({a}, {b})",
                 "print(f'{f.numerator}/{f.denominator}')")


SOLVERS: dict[str, Callable[[dict, dict, str], str]] = {
    "bigint_mul": _bigint_mul,
    "bigint_power": _bigint_power,
    "digit_sum": _digit_sum,
    "modexp": _modexp,
    "modinv": _modinv,
    "crt": _crt,
    "nth_prime": _nth_prime,
    "prime_sum": _prime_sum,
    "divisor_function": _divisor_function,
    "gcd_big": _gcd_big,
    "binomial": _binomial,
    "arrangements": _arrangements,
    "stars_and_bars": _stars_and_bars,
    "divisible_count": _divisible_count,
    "derangements": _derangements,
    "linear_system": _linear_system,
    "fraction_sum": _fraction_sum,
    "days_between": _days_between,
    "weekday": _weekday,
    "date_add": _date_add,
    "rg_basic_arithmetic": _rg_arithmetic,
    "rg_products": _rg_arithmetic,
    "rg_gcd": _rg_gcd,
    "rg_lcm": _rg_lcm,
    "rg_prime_factorization": _rg_prime_factorization,
    "rg_count_primes": _rg_count_primes,
    "rg_fraction_simplification": _rg_fraction_simplification,
}

_INTROS: dict[str, str] = {
    "modexp": "I'll use Python's three-argument pow for the modular power.",
    "modinv": "I'll compute the modular inverse with pow(a, -1, m).",
    "crt": "I'll combine the congruences one at a time (Chinese remainder theorem).",
    "nth_prime": "I'll sieve primes up to a safe bound and index the list.",
    "prime_sum": "I'll sieve the primes up to the upper bound and add those in range.",
    "rg_count_primes": "I'll sieve the primes up to the upper bound and count those in range.",
    "divisor_function": "I'll factor the number and apply the multiplicative formula.",
    "rg_prime_factorization": "I'll factor the number by trial division.",
    "divisible_count": "I'll count with inclusion-exclusion over the divisors.",
    "linear_system": "I'll solve the system exactly with fractions (Gauss-Jordan elimination).",
    "fraction_sum": "I'll add the fractions exactly with the fractions module.",
    "rg_fraction_simplification": "I'll reduce the fraction with the fractions module.",
    "days_between": "I'll let datetime count the days.",
    "date_add": "I'll let datetime do the date arithmetic.",
    "weekday": "I'll ask datetime for the weekday.",
}
_DEFAULT_INTRO = "I'll compute this exactly in Python."


def solution_code(task: dict) -> str:
    """A short Python program that computes ``task``'s answer and prints it canonically."""
    meta = task.get("metadata") or {}
    family = meta.get("family")
    solver = SOLVERS.get(family)  # type: ignore[arg-type]
    if solver is None:
        raise ValueError(f"no solution template for family {family!r}")
    return solver(_load(meta.get("params")), _load(meta.get("extra")), task.get("question", ""))


def _tool_call(name: str, arguments: dict[str, Any]) -> str:
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{payload}\n</tool_call>"


def expert_code_turn(task: dict) -> str:
    """Turn 1: a brief sentence and a ``python`` call running :func:`solution_code`."""
    family = (task.get("metadata") or {}).get("family")
    intro = _INTROS.get(family, _DEFAULT_INTRO)  # type: ignore[arg-type]
    return f"{intro}\n{_tool_call('python', {'code': solution_code(task)})}"


def expert_answer_turn(tool_output: str) -> str:
    """Turn 2: submit the last non-empty line the program printed."""
    lines = [ln.strip() for ln in str(tool_output).splitlines() if ln.strip()]
    return _tool_call("answer", {"answer": lines[-1] if lines else ""})


def expert_turns(task: dict, tool_output: str | None = None) -> list[str]:
    """The scripted expert's assistant turns: ``[code turn]``, or ``[code turn, answer turn]``
    when the python tool's output for the first turn is given."""
    turns = [expert_code_turn(task)]
    if tool_output is not None:
        turns.append(expert_answer_turn(tool_output))
    return turns
