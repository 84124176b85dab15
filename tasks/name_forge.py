"""Invented, pronounceable names that no model has seen attached to any fact.

Names are built from syllables and drawn without replacement from one shared pool, so no two
entities of the knowledge base share a name word (except people sharing a family name, which is
deliberate and realistic): a question that names an entity always names exactly one.
"""

from __future__ import annotations

import random

_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s",
           "st", "t", "tr", "v", "z", "th", "sh", "j", "w", "l", "m", "n", "r", "s", "t", "v")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "a", "e", "i", "o", "ae", "ei", "ou", "ia", "y")
_INNER_CODAS = ("", "", "", "", "n", "r", "l", "s")  # soft, so syllables join without clusters
_FINAL_CODAS = ("", "", "n", "r", "l", "s", "th", "m", "k", "nd", "rn", "sk", "x", "v", "t")

# Endings that make a town or a given name look like one without copying real ones.
TOWN_SUFFIXES = ("holm", "ford", "vik", "stad", "burg", "mere", "dale", "wick", "by", "ton", "ora",
                 "enz", "ac", "ost", "ard", "ingen", "avo", "ley")
FEMALE_ENDINGS = ("a", "ia", "ine", "elle", "ra", "is")
MALE_ENDINGS = ("o", "an", "ek", "or", "us", "im")

# Real words that syllable soup can produce; rejecting them keeps every name unknown to a model.
_BLOCKLIST = frozenset("""
anna maria paris rome berlin london milan sara dora nora lima oslo bern kiev riga doha lagos
tokyo delhi boston dallas denver austin china india kenya peru cuba iran iraq mali chad oman
nepal laos tonga samoa fiji malta korea sudan gabon benin togo niger congo haiti japan italy
spain wales texas idaho utah ohio iowa maine kansas moscow monaco dublin cairo
nine mine line fine vine wine time lime tone bone lone zone rose nose hose dose pose more
sore tore bore core dune tune rune lane mane sane vane cane name same tame game fame sale
tale bale male pale hole pole role mole vole sole dole here mere were wire tire fire hire
sire dire lore done gone none sure pure cure lure mare bare care dare fare hare rare ware
dime mile pile tile vile wile bile rile hide ride side tide wide bide lobe robe
data area idea mania sofa soda coma lava java nova tuba vista sierra zebra drama
laser later water sister taper paper river rider miner liner diner toner loner wiser
""".split())


class NameForge:
    """Draws names that are unique across everything this forge has produced."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._used: set[str] = set(_BLOCKLIST)

    def _raw(self, min_syl: int, max_syl: int) -> str:
        r = self.rng
        n = r.randint(min_syl, max_syl)
        parts = [r.choice(_ONSETS) + r.choice(_VOWELS) + r.choice(_INNER_CODAS) for _ in range(n - 1)]
        parts.append(r.choice(_ONSETS) + r.choice(_VOWELS) + r.choice(_FINAL_CODAS))
        if r.random() < 0.25:  # names may start with a vowel too
            parts[0] = parts[0].lstrip("bcdfghjklmnprstvwxz") or parts[0]
        return "".join(parts)

    def word(self, min_syl: int = 2, max_syl: int = 3, suffixes: tuple[str, ...] = (),
             min_len: int = 4, max_len: int = 11) -> str:
        for _ in range(10_000):
            w = self._raw(min_syl, max_syl)
            if suffixes and self.rng.random() < 0.6:
                w += self.rng.choice(suffixes)
            # Triple letters and vowel-less words read as typos, not names.
            if not (min_len <= len(w) <= max_len) or not any(v in w for v in "aeiouy"):
                continue
            if any(w[i] == w[i + 1] == w[i + 2] for i in range(len(w) - 2)):
                continue
            w = w.capitalize()
            if w.lower() in self._used:
                continue
            self._used.add(w.lower())
            return w
        raise RuntimeError("name pool exhausted; widen the syllable inventory in tasks/name_forge.py")

    def given_name(self, gender: str) -> str:
        endings = FEMALE_ENDINGS if gender == "f" else MALE_ENDINGS
        for _ in range(10_000):
            stem = self._raw(1, 2).rstrip("aeiouy")
            if not any(v in stem for v in "aeiouy"):
                continue  # "Dr" + "a" reads as a typo
            w = (stem + self.rng.choice(endings)).capitalize()
            if 4 <= len(w) <= 9 and w.lower() not in self._used:
                self._used.add(w.lower())
                return w
        raise RuntimeError("given-name pool exhausted")
