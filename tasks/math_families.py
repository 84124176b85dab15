"""Our own math problem families: problems an agent should solve by *computing*, not recalling.

Each family is a function ``(rng) -> Problem``. It draws its parameters from the seeded
``random.Random`` it is given and computes the answer exactly with integers, ``Fraction`` or
``datetime``. ``Problem.params`` is the template instance: the split and the dedupe key are
derived from it, never from the phrasing, so one instance can't be in train and held-out at
once under two wordings.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)


@dataclass
class Problem:
    question: str
    answer: str
    answer_type: str  # integer | fraction | date | weekday
    params: dict[str, Any]  # the template instance; JSON-serialisable, order-independent
    template: str
    difficulty: str
    extra: dict[str, Any] = field(default_factory=dict)


def _pick(rng: random.Random, options: list[str]) -> tuple[int, str]:
    i = rng.randrange(len(options))
    return i, options[i]


def _rand_digits(rng: random.Random, n: int) -> int:
    return rng.randrange(10 ** (n - 1), 10**n)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _level(value: float, easy_below: float, hard_from: float) -> str:
    if value < easy_below:
        return "easy"
    return "hard" if value >= hard_from else "medium"


_INT = " Give the exact integer."


# --- big-integer arithmetic -------------------------------------------------------------------


def bigint_mul(rng: random.Random) -> Problem:
    da, db = rng.randint(12, 32), rng.randint(12, 32)
    a, b = _rand_digits(rng, da), _rand_digits(rng, db)
    if rng.random() < 0.3:
        c = _rand_digits(rng, rng.randint(20, 40))
        t, q = _pick(rng, [
            "Compute {a} × {b} − {c}.",
            "What is the value of {a} * {b} - {c}?",
        ])
        q = q.format(a=a, b=b, c=c)
        ans = a * b - c
        params = {"op": "mul_sub", "a": a, "b": b, "c": c}
    else:
        t, q = _pick(rng, [
            "Compute {a} × {b}.",
            "What is the product of {a} and {b}?",
            "Multiply {a} by {b}.",
        ])
        q = q.format(a=a, b=b)
        ans = a * b
        params = {"op": "mul", "a": a, "b": b}
    return Problem(q + _INT, str(ans), "integer", params, f"{params['op']}/{t}",
                   _level(da + db, 36, 52))


def bigint_power(rng: random.Random) -> Problem:
    base = rng.randint(3, 999)
    # Exponents chosen so the result has 25-120 digits: too long to guess, easy to compute.
    digits = rng.randint(25, 120)
    exp = max(2, round(digits / math.log10(base)))
    t, q = _pick(rng, [
        "Compute {b}^{e} exactly.",
        "What is {b} raised to the power {e}? Write out every digit.",
        "Evaluate {b}**{e}.",
    ])
    return Problem(q.format(b=base, e=exp) + _INT, str(base**exp), "integer",
                   {"base": base, "exp": exp}, f"power/{t}", _level(digits, 50, 90))


def digit_sum(rng: random.Random) -> Problem:
    if rng.random() < 0.5:
        n = rng.randint(25, 400)
        value, what = math.factorial(n), f"{n}!"
        params: dict[str, Any] = {"kind": "factorial", "n": n}
    else:
        b, e = rng.randint(2, 99), rng.randint(50, 600)
        value, what = b**e, f"{b}^{e}"
        params = {"kind": "power", "base": b, "exp": e}
    t, q = _pick(rng, [
        "What is the sum of the decimal digits of {w}?",
        "Find the digit sum of {w} (written in base 10).",
    ])
    return Problem(q.format(w=what) + _INT, str(sum(map(int, str(value)))), "integer", params,
                   f"{params['kind']}/{t}", _level(len(str(value)), 150, 600))


# --- number theory ----------------------------------------------------------------------------


def modexp(rng: random.Random) -> Problem:
    a = rng.randint(2, 10**rng.randint(2, 9))
    e = rng.randint(10**3, 10**rng.randint(4, 18))
    m = rng.choice([rng.randint(10**3, 10**6), rng.randint(10**6, 10**10), 10**9 + 7, 998244353,
                    10 ** rng.randint(3, 12)])
    t, q = _pick(rng, [
        "Compute {a}^{e} mod {m}.",
        "What is the remainder when {a}^{e} is divided by {m}?",
        "Find {a} to the power {e}, modulo {m}.",
    ])
    return Problem(q.format(a=a, e=e, m=m) + _INT, str(pow(a, e, m)), "integer",
                   {"a": a, "e": e, "m": m}, f"modexp/{t}", _level(len(str(e)), 7, 13))


def modinv(rng: random.Random) -> Problem:
    while True:
        m = rng.randint(10**3, 10 ** rng.randint(5, 15))
        a = rng.randint(2, m - 1)
        if math.gcd(a, m) == 1:
            break
    t, q = _pick(rng, [
        "Find the multiplicative inverse of {a} modulo {m}, as an integer between 0 and {m1}.",
        "Compute x with 0 <= x < {m} such that {a}·x ≡ 1 (mod {m}).",
        "What is the inverse of {a} mod {m}? Answer with the least non-negative residue.",
    ])
    return Problem(q.format(a=a, m=m, m1=m - 1), str(pow(a, -1, m)), "integer",
                   {"a": a, "m": m}, f"modinv/{t}", _level(len(str(m)), 7, 12))


def crt(rng: random.Random) -> Problem:
    k = rng.choice([2, 3, 3, 4])
    moduli: list[int] = []
    while len(moduli) < k:
        m = rng.randint(3, 10 ** rng.randint(2, 5))
        if all(math.gcd(m, other) == 1 for other in moduli):
            moduli.append(m)
    residues = [rng.randrange(m) for m in moduli]
    x, mod = 0, 1
    for r, m in zip(residues, moduli):
        # Lift the running solution one congruence at a time (constructive CRT).
        step = ((r - x) * pow(mod, -1, m)) % m
        x, mod = x + mod * step, mod * m
    lines = ", ".join(f"x ≡ {r} (mod {m})" for r, m in zip(residues, moduli))
    q = (f"Find the smallest non-negative integer x such that {lines}."
         if rng.random() < 0.5 else
         f"Solve the system of congruences {lines}. Give the least non-negative solution x.")
    return Problem(q, str(x % mod), "integer", {"residues": residues, "moduli": moduli},
                   "crt", _level(k, 3, 4))


def _sieve(limit: int) -> list[int]:
    flags = bytearray([1]) * (limit + 1)
    flags[0:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if flags[i]:
            flags[i * i :: i] = bytearray(len(range(i * i, limit + 1, i)))
    return [i for i, f in enumerate(flags) if f]


_PRIMES = _sieve(300_000)
_PRIME_PREFIX = [0, *itertools.accumulate(_PRIMES)]


def nth_prime(rng: random.Random) -> Problem:
    n = rng.randint(100, 25_000)
    t, q = _pick(rng, [
        "What is the {nth} prime number? (The 1st prime is 2.)",
        "Counting 2 as the first prime, which prime is number {n} in the sequence?",
    ])
    return Problem(q.format(n=n, nth=_ordinal(n)) + _INT, str(_PRIMES[n - 1]), "integer", {"n": n},
                   f"nth_prime/{t}", _level(n, 2000, 12000))


def prime_sum(rng: random.Random) -> Problem:
    lo = rng.randint(0, 100_000)
    hi = lo + rng.randint(1000, 150_000)
    s = _PRIME_PREFIX[bisect.bisect_right(_PRIMES, hi)] - _PRIME_PREFIX[bisect.bisect_left(_PRIMES, lo)]
    t, q = _pick(rng, [
        "What is the sum of all prime numbers p with {lo} <= p <= {hi}?",
        "Add up every prime between {lo} and {hi} inclusive. What is the total?",
    ])
    return Problem(q.format(lo=lo, hi=hi) + _INT, str(s), "integer", {"lo": lo, "hi": hi},
                   f"prime_sum/{t}", _level(hi - lo, 20_000, 100_000))


_SMALL_PRIMES = _PRIMES[:15]


def divisor_function(rng: random.Random) -> Problem:
    # Build N from a known factorisation so it is large yet has a rich divisor structure.
    n, factors = 1, {}
    for p in rng.sample(_SMALL_PRIMES, rng.randint(2, 5)):
        factors[p] = rng.randint(1, 6)
        n *= p ** factors[p]
    if rng.random() < 0.3:
        big = rng.choice(_PRIMES[1000:])
        factors[big] = 1
        n *= big
    kind = rng.choice(["count", "sum", "totient"])
    if kind == "count":
        ans = math.prod(e + 1 for e in factors.values())
        q = f"How many positive divisors does {n} have?"
    elif kind == "sum":
        ans = math.prod((p ** (e + 1) - 1) // (p - 1) for p, e in factors.items())
        q = f"What is the sum of all positive divisors of {n} (including 1 and {n} itself)?"
    else:
        ans = math.prod(p ** (e - 1) * (p - 1) for p, e in factors.items())
        q = f"Compute Euler's totient φ({n}): how many integers in 1..{n} are coprime to {n}?"
    return Problem(q + _INT, str(ans), "integer", {"kind": kind, "n": n}, f"divisors/{kind}",
                   _level(len(str(n)), 7, 12))


def gcd_big(rng: random.Random) -> Problem:
    g = rng.randint(2, 10 ** rng.randint(3, 8))
    a = g * rng.randint(10**5, 10**10)
    b = g * rng.randint(10**5, 10**10)
    op = rng.choice(["gcd", "lcm"])
    ans = math.gcd(a, b) if op == "gcd" else math.lcm(a, b)
    q = (f"What is the greatest common divisor of {a} and {b}?" if op == "gcd"
         else f"What is the least common multiple of {a} and {b}?")
    return Problem(q + _INT, str(ans), "integer", {"op": op, "a": min(a, b), "b": max(a, b)},
                   op, _level(len(str(a * b)), 20, 28))


# --- combinatorics ----------------------------------------------------------------------------


def binomial(rng: random.Random) -> Problem:
    if rng.random() < 0.6:
        n = rng.randint(20, 200)
        k = rng.randint(3, n // 2)
        t, q = _pick(rng, [
            "Compute the binomial coefficient C({n}, {k}).",
            "In how many ways can a committee of {k} be chosen from {n} people?",
            "How many {k}-element subsets does a set of {n} elements have?",
        ])
        return Problem(q.format(n=n, k=k) + _INT, str(math.comb(n, k)), "integer",
                       {"kind": "choose", "n": n, "k": k}, f"choose/{t}", _level(n, 50, 120))
    n = rng.randint(6, 40)
    k = rng.randint(2, n - 2)
    a, b = rng.choice([-1, 1]) * rng.randint(1, 9), rng.choice([-1, 1]) * rng.randint(1, 9)
    ans = math.comb(n, k) * a**k * b ** (n - k)
    q = f"What is the coefficient of x^{k} in the expansion of ({a}x {'+' if b > 0 else '-'} {abs(b)})^{n}?"
    return Problem(q + _INT, str(ans), "integer", {"kind": "coeff", "n": n, "k": k, "a": a, "b": b},
                   "coeff", _level(n, 15, 30))


_ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def arrangements(rng: random.Random) -> Problem:
    letters = rng.sample(_ALPHA, rng.randint(3, 6))
    counts = [rng.randint(1, 5) for _ in letters]
    word = "".join(ch * c for ch, c in zip(letters, counts))
    word = "".join(rng.sample(word, len(word)))
    total = math.factorial(len(word))
    for c in counts:
        total //= math.factorial(c)
    t, q = _pick(rng, [
        "How many distinct strings can be formed by rearranging all the letters of {w}?",
        "Count the distinct permutations of the letters in the string {w}.",
    ])
    # The multiset, not the shuffled word, is the instance: anagrams of one word are one problem.
    params = {"multiset": sorted(c for c in counts), "letters": "".join(sorted(word))}
    return Problem(q.format(w=word) + _INT, str(total), "integer", params, f"anagram/{t}",
                   _level(len(word), 10, 18))


def stars_and_bars(rng: random.Random) -> Problem:
    k = rng.randint(3, 9)
    n = rng.randint(10, 120)
    lower = rng.choice([0, 0, 1, 2])
    # Substitute y_i = x_i - lower to reduce to the non-negative case.
    ans = math.comb(n - k * lower + k - 1, k - 1) if n - k * lower >= 0 else 0
    if ans == 0:
        n += k * lower
        ans = math.comb(n - k * lower + k - 1, k - 1)
    vars_ = " + ".join(f"x{i}" for i in range(1, k + 1))
    q = (f"How many solutions in integers does {vars_} = {n} have, "
         f"if every x_i >= {lower}?")
    return Problem(q + _INT, str(ans), "integer", {"k": k, "n": n, "lower": lower}, "stars_bars",
                   _level(k, 5, 8))


def divisible_count(rng: random.Random) -> Problem:
    limit = rng.randint(10**4, 10**12)
    divs = sorted(rng.sample(range(2, 60), rng.randint(2, 4)))
    # Inclusion-exclusion over all non-empty subsets of the divisors.
    total = 0
    for mask in range(1, 1 << len(divs)):
        chosen = [d for i, d in enumerate(divs) if mask >> i & 1]
        total += (-1) ** (len(chosen) + 1) * (limit // math.lcm(*chosen))
    names = ", ".join(map(str, divs[:-1])) + f" or {divs[-1]}"
    q = f"How many integers n with 1 <= n <= {limit} are divisible by at least one of {names}?"
    return Problem(q + _INT, str(total), "integer", {"limit": limit, "divs": divs},
                   "inclusion_exclusion", _level(len(divs), 3, 4))


def derangements(rng: random.Random) -> Problem:
    n = rng.randint(5, 150)
    d0, d1 = 1, 0
    for i in range(2, n + 1):
        d0, d1 = d1, (i - 1) * (d0 + d1)
    ans = d1 if n >= 1 else d0
    t, q = _pick(rng, [
        "In how many ways can {n} letters be put into their {n} addressed envelopes so that no letter is in its own envelope?",
        "How many permutations of {n} elements have no fixed point?",
    ])
    return Problem(q.format(n=n) + _INT, str(ans), "integer", {"n": n}, f"derangement/{t}",
                   _level(n, 20, 60))


# --- linear algebra ---------------------------------------------------------------------------


def _det(m: list[list[int]]) -> int:
    if len(m) == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    return sum((-1) ** j * m[0][j] * _det([row[:j] + row[j + 1 :] for row in m[1:]])
               for j in range(len(m)))


def linear_system(rng: random.Random) -> Problem:
    n = rng.choice([2, 3, 3, 4])
    names = ["x", "y", "z", "w"][:n]
    while True:
        mat = [[rng.randint(-12, 12) for _ in range(n)] for _ in range(n)]
        if _det(mat) != 0:
            break
    sol = [rng.randint(-30, 30) for _ in range(n)]
    rhs = [sum(c * s for c, s in zip(row, sol)) for row in mat]

    def term(c: int, v: str, first: bool) -> str:
        sign = "-" if c < 0 else ("" if first else "+")
        mag = "" if abs(c) == 1 else str(abs(c))
        return f"{sign}{mag}{v}" if first else f" {sign} {mag}{v}"

    eqs = []
    for row, r in zip(mat, rhs):
        parts = [(c, v) for c, v in zip(row, names) if c != 0]
        lhs = "".join(term(c, v, i == 0) for i, (c, v) in enumerate(parts))
        eqs.append(f"{lhs} = {r}")
    ask = rng.randrange(n)
    q = ("Solve the system of linear equations:\n" + "\n".join(eqs)
         + f"\nWhat is the value of {names[ask]}?")
    # The system is the instance; asking for another variable of the same system is not new.
    return Problem(q + _INT, str(sol[ask]), "integer", {"matrix": mat, "rhs": rhs}, f"linsys{n}",
                   {2: "easy", 3: "medium", 4: "hard"}[n], {"asked": names[ask], "solution": sol})


def fraction_sum(rng: random.Random) -> Problem:
    k = rng.randint(3, 6)
    while True:
        terms = [Fraction(rng.randint(1, 40), rng.randint(2, 60)) * rng.choice([1, 1, -1])
                 for _ in range(k)]
        total = sum(terms, Fraction(0))
        if total.denominator != 1:
            break
    expr = ""
    for i, f in enumerate(terms):
        body = f"{abs(f.numerator)}/{f.denominator}"
        expr += (("-" if f < 0 else "") + body) if i == 0 else (f" {'-' if f < 0 else '+'} {body}")
    q = f"Compute {expr}. Give the result as a fraction p/q in lowest terms."
    params = {"terms": [[f.numerator, f.denominator] for f in terms]}
    return Problem(q, f"{total.numerator}/{total.denominator}", "fraction", params, "fraction_sum",
                   _level(k, 4, 6))


# --- dates ------------------------------------------------------------------------------------


def _rand_date(rng: random.Random, lo: int = 1600, hi: int = 2400) -> dt.date:
    start, end = dt.date(lo, 1, 1).toordinal(), dt.date(hi, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(start, end))


def _say(d: dt.date, style: int) -> str:
    if style == 0:
        return d.isoformat()
    if style == 1:
        return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def days_between(rng: random.Random) -> Problem:
    a = _rand_date(rng)
    b = dt.date.fromordinal(a.toordinal() + rng.randint(30, 80_000))
    style = rng.randrange(3)
    q = (f"How many days are there from {_say(a, style)} to {_say(b, style)}? "
         "Count the days between them: the start date is excluded, the end date included.")
    return Problem(q + " Use the proleptic Gregorian calendar." + _INT, str((b - a).days), "integer",
                   {"a": a.isoformat(), "b": b.isoformat()}, f"days_between/{style}",
                   _level((b - a).days, 2000, 20000))


def weekday(rng: random.Random) -> Problem:
    d = _rand_date(rng, 1583, 2999)
    style = rng.randrange(3)
    t, q = _pick(rng, [
        "On which day of the week does {d} fall?",
        "What weekday was (or will be) {d}?",
    ])
    q = q.format(d=_say(d, style)) + " Use the Gregorian calendar and answer with the weekday name."
    return Problem(q, WEEKDAYS[d.weekday()], "weekday", {"date": d.isoformat()},
                   f"weekday/{t}/{style}", _level(abs(d.year - 2000), 50, 300))


def date_add(rng: random.Random) -> Problem:
    d = _rand_date(rng, 1700, 2300)
    n = rng.randint(100, 50_000) * rng.choice([1, 1, -1])
    res = dt.date.fromordinal(d.toordinal() + n)
    style = rng.randrange(3)
    when = f"{n} days after" if n > 0 else f"{-n} days before"
    q = (f"What date is {when} {_say(d, style)}? "
         "Use the Gregorian calendar and answer in YYYY-MM-DD format.")
    return Problem(q, res.isoformat(), "date", {"date": d.isoformat(), "offset": n},
                   f"date_add/{style}", _level(abs(n), 1000, 10000))


FAMILIES: dict[str, Callable[[random.Random], Problem]] = {
    "bigint_mul": bigint_mul,
    "bigint_power": bigint_power,
    "digit_sum": digit_sum,
    "modexp": modexp,
    "modinv": modinv,
    "crt": crt,
    "nth_prime": nth_prime,
    "prime_sum": prime_sum,
    "divisor_function": divisor_function,
    "gcd_big": gcd_big,
    "binomial": binomial,
    "arrangements": arrangements,
    "stars_and_bars": stars_and_bars,
    "divisible_count": divisible_count,
    "derangements": derangements,
    "linear_system": linear_system,
    "fraction_sum": fraction_sum,
    "days_between": days_between,
    "weekday": weekday,
    "date_add": date_add,
}
