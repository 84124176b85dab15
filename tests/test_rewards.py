"""Tests for envs.rewards: every expected number below is worked out by hand in a comment."""

from __future__ import annotations

import hashlib
import math
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from envs.rewards import (
    THINK_ANSWER_PATTERN,
    RewardTerm,
    answer_tag_reward,
    boxed_reward,
    combine,
    exact_match,
    extract_boxed,
    extract_tag,
    format_reward,
    gated_reward,
    gated_reward_breakdown,
    gated_step_rewards,
    math_equivalent,
    normalize_answer,
    otc_coefficient,
    otc_group_rewards,
    otc_optimal_calls,
    sql_execution_match,
    sql_has_top_level_order_by,
    token_f1,
    tool_efficiency_reward,
)

BIG = "12345678901234567890123456789012345678901234567890"  # 50 digits

# ---------------------------------------------------------------------------------------------
# math_equivalent
# ---------------------------------------------------------------------------------------------

MATH_CASES = [
    # plain text answers
    ("The answer is 42.", "42", 1.0),
    ("I tried 3 and 5; the final answer is 7", "7", 1.0),
    ("The final answer is $\\boxed{3}$. Earlier I thought 4.", "3", 1.0),
    ("**Answer:** 12", "12", 1.0),
    # boxed, fractions, decimals
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("0.5", "\\frac12", 1.0),
    ("0.5", "1/2", 1.0),
    ("1/2", "0.5", 1.0),
    ("$\\frac{\\sqrt2}{2}$", "\\frac{\\sqrt{2}}{2}", 1.0),
    ("3.0", "3", 1.0),
    ("-3", "3", 0.0),
    ("1,000,000", "1000000", 1.0),
    ("50%", "0.5", 1.0),
    ("2\\pi", "2*pi", 1.0),
    ("sqrt(2)", "\\sqrt{2}", 1.0),
    # bare expressions are read as LaTeX, not as "the first number"
    ("x^2+1", "1+x^2", 1.0),
    ("x+1", "1+x", 1.0),
    ("x+2", "1+x", 0.0),
    ("{1,2}", "\\{1, 2\\}", 1.0),
    ("$\\binom{10}{3}$", "120", 1.0),
    # an <answer> tag is parsed on its own, a Python power is a power
    ("<think>maybe 7</think><answer>x^2+1</answer>", "1+x^2", 1.0),
    ("<answer>16</answer>", "17", 0.0),
    ("2**10", "1024", 1.0),
    ("2**10", "210", 0.0),
    # large integers compare exactly
    (BIG, BIG, 1.0),
    (BIG[:-1] + "1", BIG, 0.0),
    ("The answer is " + BIG + ".", BIG, 1.0),
    ("\\boxed{2^{2024}}", "2^{2024}", 1.0),
    # dates: never the arithmetic 2024-3-1
    ("2024-03-01", "2024-03-01", 1.0),
    ("The meeting is on March 1, 2024.", "2024-03-01", 1.0),
    ("The meeting is on 2024-03-02.", "2024-03-01", 0.0),
    ("2020", "2024-03-01", 0.0),
    # words
    ("Tuesday", "Tuesday", 1.0),
    ("The answer is tuesday.", "Tuesday", 1.0),
    ("\\boxed{\\text{Tuesday}}", "Tuesday", 1.0),
    ("Tue", "Tuesday", 1.0),
    ("Wednesday", "Tuesday", 0.0),
    ("ba", "ab", 0.0),  # as sympy symbols b*a == a*b; as words they differ
    ("5", "5 cm", 1.0),
    # multiple choice (normalize_answer would erase "A" as an article)
    ("The answer is (B).", "B", 1.0),
    ("A", "A", 1.0),
    ("A", "B", 0.0),
    # garbage never raises
    ("asdf )(*&^", "7", 0.0),
    ("", "7", 0.0),
    ("7", "", 0.0),
    (None, "7", 0.0),
    ("\\frac{", "1/2", 0.0),
    ("}" * 50 + "{" * 50, "1", 0.0),
]


@pytest.mark.parametrize("prediction,gold,expected", MATH_CASES)
def test_math_equivalent(prediction, gold, expected):
    assert math_equivalent(prediction, gold) == expected


PATHOLOGICAL = [
    "$2^{2^{30}}$",  # a 300-million-digit integer
    "$(10^{10})!$",
    "\\boxed{\\binom{1000000}{500000}}",  # evaluated while parsing
    "binomial(100000, 50000)",
    "$\\sum_{i=1}^{10^9} i^i$",
    "$\\int_0^1 e^{x^{x^x}} dx$",
    "$10^{10^{10}} \\cdot 0$",
    "9^9^9^9",
    "$10!!!!!!$",
    "$(x+y+z)^{60}$",
    "$\\sin(x)^{1000} + \\cos(x)^{1000}$",
    "$e^{e^{e^{10}}}$",
]


@pytest.mark.parametrize("prediction", PATHOLOGICAL)
def test_math_equivalent_pathological_inputs_score_zero_fast(prediction):
    t0 = time.monotonic()
    assert math_equivalent(prediction, "1") == 0.0
    assert time.monotonic() - t0 < 3.0


def test_math_equivalent_in_worker_threads():
    # math-verify's own signal timeouts raise off the main thread; ours must just work there,
    # and the expression screening must keep pathological answers from hanging the worker.
    cases = [(p, g, e) for p, g, e in MATH_CASES if isinstance(p, str)][:20]
    cases += [(p, "1", 0.0) for p in PATHOLOGICAL[:4]]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(lambda c: math_equivalent(c[0], c[1]), cases))
    assert got == [e for _, _, e in cases]
    assert time.monotonic() - t0 < 10.0


def test_math_equivalent_long_prediction_reads_the_tail():
    text = "blah " * 5000 + "so the answer is \\boxed{17}"
    assert math_equivalent(text, "17") == 1.0
    assert math_equivalent("x" * 200_000, "1") == 0.0


def test_math_equivalent_timeout_applies_on_main_thread():
    assert threading.current_thread() is threading.main_thread()
    t0 = time.monotonic()
    # Passes the screening (30th power of a trinomial: 496 terms) but takes ~1 s to simplify.
    assert math_equivalent("$(p+q+r)^{30}$", "1", timeout_s=0.05) == 0.0
    assert time.monotonic() - t0 < 0.5


def test_math_equivalent_restores_outer_timer_and_handler():
    fired = []

    def outer(signum, frame):
        fired.append(signum)

    prev_handler = signal.signal(signal.SIGALRM, outer)
    prev_timer = signal.setitimer(signal.ITIMER_REAL, 30.0)
    try:
        assert math_equivalent("x^2+1", "1+x^2", timeout_s=2.0) == 1.0
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 20.0 < remaining <= 30.0
        assert signal.getsignal(signal.SIGALRM) is outer
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, prev_handler)
        if prev_timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *prev_timer)


def test_math_equivalent_honours_a_sooner_outer_deadline():
    fired = []
    prev_handler = signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
    prev_timer = signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        t0 = time.monotonic()
        # Our own limit is 5 s, the outer one 0.05 s: we stop early and the outer still fires.
        assert math_equivalent("$(a+b+c+d)^{12}$", "1", timeout_s=5.0) == 0.0
        assert time.monotonic() - t0 < 3.0  # well before our own 5 s limit, even on a loaded machine
        deadline = time.monotonic() + 1.0
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, prev_handler)
        if prev_timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *prev_timer)


# ---------------------------------------------------------------------------------------------
# normalize_answer, exact_match, token_f1
# ---------------------------------------------------------------------------------------------


def test_normalize_answer():
    assert normalize_answer("The  Quick, brown-fox “jumps”!") == "quick brownfox jumps"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("1,000.5") == "10005"  # SQuAD deletes punctuation, it does not split
    assert normalize_answer("") == ""


def test_exact_match():
    assert exact_match("The Cat!", "cat") == 1.0
    assert exact_match("a cat", "dog") == 0.0
    assert exact_match("Paris", ["London", "paris."]) == 1.0
    assert exact_match("Paris", []) == 0.0


def test_token_f1_hand_computed():
    # "the cat sat" -> [cat, sat]; "cat sat down" -> [cat, sat, down]: overlap 2,
    # P = 2/2 = 1, R = 2/3, F1 = 2 * 1 * (2/3) / (1 + 2/3) = 0.8
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    # "a b b c" -> [b, b, c] ("a" is an article); gold [b, b, b, d]: overlap min(2,3) = 2 b's,
    # P = 2/3, R = 2/4, F1 = 2 * (1/3) / (7/6) = 4/7
    assert token_f1("a b b c", "b b b d") == pytest.approx(4 / 7)
    # max over golds: vs "paris france" P = 1, R = 1/2, F1 = 2/3
    assert token_f1("Paris", ["London", "paris france"]) == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0  # SQuAD: two empty answers agree
    assert token_f1("the", "cat") == 0.0  # prediction is empty after normalisation
    assert token_f1("dog", "cat") == 0.0


# ---------------------------------------------------------------------------------------------
# sql_execution_match
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, score REAL);
        INSERT INTO people VALUES (1, 'ann', 31, 0.1), (2, 'bob', 25, 0.2),
                                  (3, 'cid', 40, 0.7), (4, 'dee', 31, 1.5);
        """
    )
    conn.commit()
    conn.close()
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sql_unordered_gold_ignores_row_order(db):
    gold = "SELECT name FROM people WHERE age > 30"
    assert sql_execution_match("SELECT name FROM people WHERE age > 30 ORDER BY name DESC", gold, db) == 1.0
    assert sql_execution_match("SELECT name FROM people WHERE age >= 31", gold, db) == 1.0
    assert sql_execution_match("SELECT name FROM people WHERE age > 24", gold, db) == 0.0  # adds bob


def test_sql_top_level_order_by_makes_order_matter(db):
    gold = "SELECT name FROM people ORDER BY age, name"
    assert sql_execution_match("SELECT name FROM people ORDER BY age ASC, name ASC", gold, db) == 1.0
    assert sql_execution_match("SELECT name FROM people ORDER BY age DESC, name", gold, db) == 0.0
    desc = "SELECT name FROM people ORDER BY age DESC, name"
    assert sql_execution_match(desc, gold, db, ordered=False) == 1.0
    # ordered=True on a gold without ORDER BY compares lists: rowid order vs reversed names
    assert sql_execution_match("SELECT name FROM people ORDER BY name DESC", "SELECT name FROM people", db, ordered=True) == 0.0
    assert sql_execution_match("SELECT name FROM people ORDER BY id", "SELECT name FROM people", db, ordered=True) == 1.0


def test_sql_order_by_detection():
    assert sql_has_top_level_order_by("select a from t order by a")
    assert sql_has_top_level_order_by("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1")
    assert not sql_has_top_level_order_by("SELECT * FROM (SELECT a FROM t ORDER BY a)")
    assert not sql_has_top_level_order_by("SELECT a, ROW_NUMBER() OVER (ORDER BY a) FROM t")
    assert not sql_has_top_level_order_by("SELECT a FROM t -- ORDER BY a")
    assert not sql_has_top_level_order_by("SELECT 'order by' FROM t /* ORDER BY */")
    assert not sql_has_top_level_order_by('SELECT "order by" FROM t')
    assert not sql_has_top_level_order_by("WITH x AS (SELECT a FROM t ORDER BY a) SELECT a FROM x")


def test_sql_value_normalisation(db):
    # 0.1 + 0.2 = 0.30000000000000004 rounds to 0.3
    assert sql_execution_match("SELECT 0.3", "SELECT 0.1 + 0.2", db) == 1.0
    assert sql_execution_match("SELECT 0.31", "SELECT 0.1 + 0.2", db) == 0.0
    # COUNT(*) = 4 (int) vs SUM(1.0) = 4.0 (float)
    assert sql_execution_match("SELECT SUM(1.0) FROM people", "SELECT COUNT(*) FROM people", db) == 1.0
    # AVG(score) = (0.1+0.2+0.7+1.5)/4 = 0.625 either way
    avg = "SELECT AVG(score) FROM people"
    assert sql_execution_match("SELECT SUM(score) / COUNT(*) FROM people", avg, db) == 1.0
    assert sql_execution_match("SELECT '4'", "SELECT 4", db) == 0.0  # text is not a number


def test_sql_multiset_and_columns(db):
    # ages 31, 25, 40, 31: DISTINCT drops a duplicate, so the multisets differ
    assert sql_execution_match("SELECT DISTINCT age FROM people", "SELECT age FROM people", db) == 0.0
    gold = "SELECT name, age FROM people"
    assert sql_execution_match("SELECT age, name FROM people", gold, db) == 0.0
    assert sql_execution_match("SELECT age, name FROM people", gold, db, ignore_column_order=True) == 1.0
    assert sql_execution_match("SELECT name FROM people", gold, db, ignore_column_order=True) == 0.0
    # empty result sets agree
    none = "SELECT name FROM people WHERE age > 99"
    assert sql_execution_match("SELECT name FROM people WHERE 0", none, db) == 1.0


@pytest.mark.parametrize(
    "pred",
    [
        "DROP TABLE people",
        "SELECT 1; DROP TABLE people",
        "DELETE FROM people",
        "INSERT INTO people VALUES (9, 'eve', 1, 1.0)",
        "UPDATE people SET age = 0",
        "PRAGMA query_only = OFF",
        "ATTACH DATABASE ':memory:' AS other",
        "CREATE TEMP TABLE t AS SELECT * FROM people",
        "BEGIN",
        "SELEC name FROM people",
        "SELECT nope FROM people",
        "",
        None,
    ],
)
def test_sql_bad_or_writing_predictions_score_zero(db, pred):
    before = _digest(db)
    assert sql_execution_match(pred, "SELECT COUNT(*) FROM people", db) == 0.0
    assert _digest(db) == before
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM people").fetchone() == (4,)
    conn.close()


def test_sql_timeout_aborts_endless_query(db):
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    t0 = time.monotonic()
    assert sql_execution_match(endless, "SELECT COUNT(*) FROM people", db, timeout_s=0.3) == 0.0
    assert time.monotonic() - t0 < 2.0


def test_sql_row_cap(db):
    endless_rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
    t0 = time.monotonic()
    assert sql_execution_match(endless_rows, "SELECT id FROM people", db, max_rows=100) == 0.0
    assert time.monotonic() - t0 < 2.0


def test_sql_gold_errors_raise(db, tmp_path):
    with pytest.raises(ValueError):
        sql_execution_match("SELECT 1", "SELECT nope FROM people", db)
    with pytest.raises(ValueError):
        sql_execution_match("SELECT 1", "DELETE FROM people", db)
    with pytest.raises(ValueError):
        sql_execution_match("SELECT 1", "SELECT id FROM people", db, max_rows=2)
    with pytest.raises(FileNotFoundError):
        sql_execution_match("SELECT 1", "SELECT 1", tmp_path / "missing.db")


# ---------------------------------------------------------------------------------------------
# format
# ---------------------------------------------------------------------------------------------


def test_answer_tag_reward():
    assert answer_tag_reward("<think>hm</think><answer>42</answer>") == 1.0
    assert answer_tag_reward("<answer>1</answer> then <answer>2</answer>") == 0.0
    assert answer_tag_reward("<answer>42") == 0.0
    assert answer_tag_reward("</answer>42<answer>") == 0.0
    assert answer_tag_reward("<answer>  </answer>") == 0.0
    assert answer_tag_reward("<answer>  </answer>", allow_empty=True) == 1.0
    assert answer_tag_reward("<final>x</final>", tag="final") == 1.0


def test_format_reward_counts_and_fullmatch():
    pat = r"<answer>.*?</answer>"
    assert format_reward("<answer>1</answer>", pattern=pat) == 1.0
    assert format_reward("<answer>1</answer><answer>2</answer>", pattern=pat) == 0.0
    assert format_reward("<answer>1</answer><answer>2</answer>", pattern=pat, max_count=None) == 1.0
    assert format_reward("no tags", pattern=pat, min_count=0) == 1.0
    assert format_reward("<answer>multi\nline</answer>", pattern=pat) == 1.0  # DOTALL default
    ok = "<think>plan</think>\n<answer>7</answer>\n"
    assert format_reward(ok, pattern=THINK_ANSWER_PATTERN, fullmatch=True) == 1.0
    assert format_reward("preface " + ok, pattern=THINK_ANSWER_PATTERN, fullmatch=True) == 0.0
    two = "<think>a</think><answer>1</answer><answer>2</answer>"
    assert format_reward(two, pattern=THINK_ANSWER_PATTERN, fullmatch=True) == 0.0
    assert format_reward(None, pattern=pat) == 0.0


def test_boxed_reward_and_extraction():
    assert boxed_reward("so \\boxed{\\frac{1}{2}}") == 1.0
    assert boxed_reward("\\boxed{1} or \\boxed{2}") == 0.0
    assert boxed_reward("\\boxed{1} or \\boxed{2}", exactly_one=False) == 1.0
    assert boxed_reward("\\boxed{}") == 0.0
    assert boxed_reward("\\boxed{1") == 0.0
    assert boxed_reward("\\boxed{1} \\boxed{") == 0.0
    assert extract_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"
    assert extract_boxed("none") is None
    assert extract_boxed("\\boxed{\\boxed{1}+1}") == "\\boxed{1}+1"  # outermost of the last group
    t0 = time.monotonic()
    assert boxed_reward("\\boxed{" * 200_000) == 0.0  # unclosed boxes: one linear pass
    assert time.monotonic() - t0 < 2.0
    assert extract_tag("<answer>1</answer><answer>2</answer>") == "2"
    assert extract_tag("<answer>1") is None


# ---------------------------------------------------------------------------------------------
# OTC tool efficiency
# ---------------------------------------------------------------------------------------------

OTC_CASES = [
    # (n, m, smooth, expected)
    (0, 0, 6.0, 1.0),
    (1, 0, 6.0, math.cos(math.pi / 8)),  # cos(1*pi/(2+6)) = 0.92388
    (2, 0, 6.0, math.cos(math.pi / 5)),  # cos(2pi/10) = 0.80902
    (3, 0, 6.0, math.cos(math.pi / 4)),  # cos(3pi/12) = 0.70711
    (1, 0, 1.0, 0.5),  # cos(pi/3)
    (3, 0, 0.0, 0.0),  # cos(pi/2): no smoothing, any call zeroes it
    (1, 1, 6.0, 1.0),
    (2, 1, 6.0, math.sqrt(3) / 2),  # f = 2*1*2/3 = 4/3, sin(4/3 * pi/2) = sin(2pi/3)
    (3, 1, 6.0, math.sqrt(2) / 2),  # f = 6/4 = 3/2, sin(3pi/4)
    (7, 1, 6.0, math.sin(7 * math.pi / 8)),  # f = 14/8 = 7/4, sin(7pi/8) = 0.38268
    (6, 2, 6.0, math.sqrt(2) / 2),  # f = 24/8 = 3, sin(3pi/4)
    (1, 2, 6.0, math.sqrt(3) / 2),  # f = 4/3, sin(4/3 * pi/4) = sin(pi/3)
    (0, 3, 6.0, 0.0),  # f = 0: a correct answer without the calls the group needed
]


@pytest.mark.parametrize("n,m,smooth,expected", OTC_CASES)
def test_otc_coefficient(n, m, smooth, expected):
    assert otc_coefficient(n, m, smooth=smooth) == pytest.approx(expected, abs=1e-12)


def test_otc_coefficient_options_and_validation():
    assert otc_coefficient(1, 2, penalize_fewer=False) == 1.0
    assert otc_coefficient(4, 2, penalize_fewer=False) == pytest.approx(math.sqrt(3) / 2)  # f=16/6
    # monotone decay away from the optimum on both sides
    vals = [otc_coefficient(n, 3) for n in range(3, 12)]
    assert all(a > b for a, b in zip(vals, vals[1:]))
    assert otc_coefficient(1, 3) < otc_coefficient(2, 3) < otc_coefficient(3, 3)
    with pytest.raises(ValueError):
        otc_coefficient(-1, 0)
    with pytest.raises(ValueError):
        otc_coefficient(1, 0, smooth=-1)


def test_tool_efficiency_reward():
    assert tool_efficiency_reward(1.0, 2, 1) == pytest.approx(math.sqrt(3) / 2)
    assert tool_efficiency_reward(1.0, 0, 0) == 1.0
    assert tool_efficiency_reward(0.0, 5, 1) == 0.0
    assert tool_efficiency_reward(-0.5, 5, 1) == -0.5  # penalties are not softened by calls
    # alpha * coef * correct = 2 * sin(3pi/4) * 0.5 = 0.70711
    assert tool_efficiency_reward(0.5, 3, 1, alpha=2.0) == pytest.approx(math.sqrt(2) / 2)


def test_otc_group():
    correct = [1.0, 1.0, 0.0, 1.0]
    calls = [2, 4, 0, 6]
    assert otc_optimal_calls(calls, correct) == 2  # the 0-call rollout was wrong
    # m = 2: n=2 -> 1; n=4 -> f=16/6, sin(8pi/12)=sin(2pi/3); wrong -> 0; n=6 -> f=3, sin(3pi/4)
    assert otc_group_rewards(correct, calls) == pytest.approx([1.0, math.sqrt(3) / 2, 0.0, math.sqrt(2) / 2])
    assert otc_optimal_calls([1, 2], [0.0, 0.5]) is None
    assert otc_group_rewards([0.0, 0.5], [1, 2]) == [0.0, 0.5]
    with pytest.raises(ValueError):
        otc_optimal_calls([1], [1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# G-RA
# ---------------------------------------------------------------------------------------------


def test_gated_reward_tables():
    # outcome fails its threshold: format is gated off -> 0.0
    assert gated_reward([RewardTerm("outcome", 0.0, 1.0), RewardTerm("format", 1.0, 1.0)]) == 0.0
    # outcome passes: 1 + 1 = 2.0
    assert gated_reward([RewardTerm("outcome", 1.0, 1.0), RewardTerm("format", 1.0, 1.0)]) == 2.0
    # the highest-priority term always counts, even below its own threshold: 2 * 0.4
    assert gated_reward([RewardTerm("outcome", 0.4, 1.0, weight=2.0)]) == pytest.approx(0.8)
    # outcome met -> format counts (0.5 * 0 = 0); format missed -> progress gated off: 1.0
    terms = [
        RewardTerm("outcome", 1.0, 1.0),
        RewardTerm("format", 0.0, 1.0, weight=0.5),
        RewardTerm("progress", 0.8, 0.0, weight=0.2),
    ]
    assert gated_reward(terms) == pytest.approx(1.0)
    # all gates open: 1 + 0.5 * 1 + 0.2 * 0.8 = 1.66
    terms[1] = RewardTerm("format", 1.0, 1.0, weight=0.5)
    assert gated_reward(terms) == pytest.approx(1.66)
    assert gated_reward([]) == 0.0


def test_gated_reward_breakdown():
    out = gated_reward_breakdown(
        [
            RewardTerm("outcome", 1.0, 1.0),
            RewardTerm("format", 0.0, 1.0, 0.5),
            RewardTerm("progress", 0.8, 0.0, 0.2),
        ]
    )
    assert out == pytest.approx(
        {
            "total": 1.0,
            "outcome": 1.0, "outcome/counted": 1.0, "outcome/met": 1.0,
            "format": 0.0, "format/counted": 1.0, "format/met": 0.0,
            "progress": 0.0, "progress/counted": 0.0, "progress/met": 1.0,
        }
    )
    with pytest.raises(ValueError):
        gated_reward([RewardTerm("a", 1.0, 0.0), RewardTerm("a", 1.0, 0.0)])
    with pytest.raises(ValueError):
        gated_reward([RewardTerm("a", float("nan"), 0.0)])


def test_gated_step_rewards():
    assert gated_step_rewards(1.0, [0.1, 0.2, -0.1], threshold=1.0) == [0.1, 0.2, -0.1]
    assert gated_step_rewards(0.5, [0.1, 0.2, -0.1], threshold=1.0) == [0.0, 0.0, 0.0]
    assert gated_step_rewards(0.0, [], threshold=0.0) == []


def test_combine():
    # 0.9 * 1.0 + 0.1 * 0.5 = 0.95
    assert combine((0.9, 1.0), (0.1, 0.5)) == pytest.approx(0.95)
    assert combine() == 0.0
