"""A knowledge base of invented entities and functional relations.

Every relation here maps an entity to exactly one value, which is what makes every generated
question (a chain of relations from a named entity) have exactly one answer. The facts are
made up, so a model can only answer by searching the corpus written from them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from .name_forge import TOWN_SUFFIXES, NameForge

OCCUPATIONS_TECH = ("engineer", "chemist", "physicist", "clockmaker", "instrument maker",
                    "metallurgist", "inventor", "mechanic", "optician", "shipwright")
OCCUPATIONS_BUSINESS = ("merchant", "industrialist", "banker", "shipowner", "brewer", "printer")
OCCUPATIONS_OTHER = ("painter", "novelist", "composer", "botanist", "architect", "physician",
                     "mathematician", "astronomer", "poet", "historian", "cartographer", "sculptor")
INDUSTRIES = ("textiles", "shipbuilding", "optics", "railway equipment", "chemicals", "printing",
              "brewing", "clocks and watches", "steel", "glassware", "paper", "pharmaceuticals",
              "farm machinery", "porcelain", "telegraph equipment")
COMPANY_WORDS = {
    "textiles": ("Mills", "Weavers", "Textile Works"),
    "shipbuilding": ("Shipyards", "Dockworks", "Marine Works"),
    "optics": ("Optical Works", "Lens Company", "Optics"),
    "railway equipment": ("Locomotive Works", "Railworks", "Carriage Company"),
    "chemicals": ("Chemical Company", "Dyeworks", "Chemical Works"),
    "printing": ("Press", "Printing House", "Typefoundry"),
    "brewing": ("Brewery", "Breweries", "Malting Company"),
    "clocks and watches": ("Clockworks", "Watch Company", "Horology"),
    "steel": ("Steelworks", "Ironworks", "Forge Company"),
    "glassware": ("Glassworks", "Glass Company", "Crystal Works"),
    "paper": ("Paper Mills", "Papermakers", "Paper Company"),
    "pharmaceuticals": ("Pharmaceuticals", "Apothecaries", "Remedies"),
    "farm machinery": ("Implement Works", "Plough Company", "Agricultural Works"),
    "porcelain": ("Porcelain Manufactory", "Potteries", "Ceramics"),
    "telegraph equipment": ("Telegraph Company", "Signal Works", "Electrical Works"),
}
DEVICES = ("loom", "condenser", "lathe", "barometer", "compass", "press", "pump", "valve",
           "telescope", "kiln", "governor", "regulator", "sextant", "chronometer", "furnace",
           "dynamo", "turbine", "boiler", "spindle", "gauge", "lamp", "plough", "winch", "still")
UNIVERSITY_KINDS = ("Institute", "College", "Academy", "University", "Polytechnic", "Seminary")
REGION_KINDS = ("Province", "Region", "County", "March", "Territory")
SEAS = ("Orvane Sea", "Gulf of Tessaly", "Marrow Sea", "Bight of Caldren", "Ostry Sea",
        "Sound of Velmar")


@dataclass
class Entity:
    id: str
    type: str
    name: str  # canonical answer string
    attrs: dict[str, Any] = field(default_factory=dict)  # relation -> entity id or literal
    extra: dict[str, Any] = field(default_factory=dict)  # facts for prose only (distractors)

    @property
    def mention(self) -> str:
        """How the entity reads mid-sentence ("the Sel River", "Ema Talvor")."""
        return ("the " + self.name) if self.type in _WITH_ARTICLE else self.name


_WITH_ARTICLE = {"river", "invention", "university"}

# relation -> (source type, target type or "literal:<kind>")
RELATIONS: dict[str, tuple[str, str]] = {
    "person.born_in": ("person", "town"),
    "person.birth_year": ("person", "literal:year"),
    "person.educated_at": ("person", "university"),
    "person.occupation": ("person", "literal:occupation"),
    "company.founder": ("company", "person"),
    "company.hq": ("company", "town"),
    "company.founded_year": ("company", "literal:year"),
    "company.industry": ("company", "literal:industry"),
    "invention.inventor": ("invention", "person"),
    "invention.maker": ("invention", "company"),
    "invention.year": ("invention", "literal:year"),
    "town.river": ("town", "river"),
    "town.region": ("town", "region"),
    "town.founded_year": ("town", "literal:year"),
    "town.population": ("town", "literal:count"),
    "river.source": ("river", "mountain"),
    "river.length_km": ("river", "literal:km"),
    "mountain.height_m": ("mountain", "literal:m"),
    "mountain.region": ("mountain", "region"),
    "university.town": ("university", "town"),
    "university.founded_year": ("university", "literal:year"),
    "region.capital": ("region", "town"),
}

SIZES = {"region": 24, "mountain": 90, "river": 70, "town": 330, "university": 45,
         "person": 1300, "company": 420, "invention": 460}


class KB:
    def __init__(self) -> None:
        self.entities: dict[str, Entity] = {}
        self.by_type: dict[str, list[Entity]] = {}

    def add(self, e: Entity) -> Entity:
        assert e.id not in self.entities
        self.entities[e.id] = e
        self.by_type.setdefault(e.type, []).append(e)
        return e

    def get(self, eid: str) -> Entity:
        return self.entities[eid]

    def value(self, e: Entity, relation: str) -> Any:
        return e.attrs[relation.split(".", 1)[1]]


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def generate(seed: int) -> KB:
    rng = random.Random(f"{seed}:kb")
    forge = NameForge(random.Random(f"{seed}:names"))
    kb = KB()

    for i in range(SIZES["region"]):
        kb.add(Entity(f"region-{i:04d}", "region", f"{forge.word()} {rng.choice(REGION_KINDS)}",
                      extra={"area_km2": rng.randint(800, 40_000)}))
    regions = kb.by_type["region"]

    for i in range(SIZES["mountain"]):
        kind = rng.choice(("Mount {}", "{} Peak", "Mount {}", "{} Horn"))
        kb.add(Entity(f"mountain-{i:04d}", "mountain", kind.format(forge.word()), {
            "height_m": rng.randint(900, 4800), "region": rng.choice(regions).id},
            extra={"first_ascent": rng.randint(1780, 1960)}))
    mountains = kb.by_type["mountain"]

    for i in range(SIZES["river"]):
        # A river flows into the sea or into an earlier river: never a cycle.
        earlier = kb.by_type.get("river", [])
        mouth = (rng.choice(earlier).id if earlier and rng.random() < 0.4 else rng.choice(SEAS))
        kb.add(Entity(f"river-{i:04d}", "river", f"{forge.word(1, 2, min_len=3)} River", {
            "source": rng.choice(mountains).id, "length_km": rng.randint(40, 1400)},
            extra={"mouth": mouth, "navigable_km": rng.randint(10, 300)}))
    rivers = kb.by_type["river"]

    for i in range(SIZES["town"]):
        kb.add(Entity(f"town-{i:04d}", "town", forge.word(suffixes=TOWN_SUFFIXES), {
            "river": rng.choice(rivers).id, "region": rng.choice(regions).id,
            "founded_year": rng.randint(850, 1850),
            "population": int(round(_log_uniform(rng, 900, 450_000), -1))},
            extra={"old_population_year": rng.choice((1850, 1880, 1900, 1920))}))
    towns = kb.by_type["town"]
    for t in towns:
        t.extra["old_population"] = int(round(t.attrs["population"] * rng.uniform(0.15, 0.7), -1))
    for r in regions:
        members = [t for t in towns if t.attrs["region"] == r.id] or [rng.choice(towns)]
        r.attrs["capital"] = rng.choice(members).id
        r.extra["largest_town"] = max(members, key=lambda t: (t.attrs["population"], t.id)).id

    for i in range(SIZES["university"]):
        kb.add(Entity(f"university-{i:04d}", "university",
                      f"{forge.word()} {rng.choice(UNIVERSITY_KINDS)}", {
                          "town": rng.choice(towns).id, "founded_year": rng.randint(1250, 1900)},
                      extra={"library_year": 0}))
    universities = kb.by_type["university"]
    for u in universities:
        u.extra["library_year"] = u.attrs["founded_year"] + rng.randint(5, 120)

    genders = ["f", "m"]
    given = {g: [forge.given_name(g) for _ in range(260)] for g in genders}
    surnames = [forge.word(2, 3, min_len=4, max_len=9) for _ in range(750)]
    used_full: set[str] = set()
    for i in range(SIZES["person"]):
        g = rng.choice(genders)
        while True:
            full = f"{rng.choice(given[g])} {rng.choice(surnames)}"
            if full not in used_full:
                used_full.add(full)
                break
        birth = rng.randint(1700, 1950)
        # Schools old enough to have taught them, so biographies stay plausible.
        schools = [u for u in universities if u.attrs["founded_year"] <= birth + 18]
        school = rng.choice(schools or sorted(universities, key=lambda u: u.attrs["founded_year"])[:3])
        kb.add(Entity(f"person-{i:04d}", "person", full, {
            "born_in": rng.choice(towns).id, "birth_year": birth, "educated_at": school.id,
            "occupation": rng.choice(OCCUPATIONS_OTHER)},
            extra={"gender": g, "death_year": birth + rng.randint(38, 96),
                   "married_year": birth + rng.randint(19, 40), "moved_to": rng.choice(towns).id,
                   "moved_year": birth + rng.randint(20, 50)}))
    people = kb.by_type["person"]

    # Inventors and founders are drawn from different halves so occupations stay consistent.
    shuffled = people[:]
    rng.shuffle(shuffled)
    inventors, founders = shuffled[: len(shuffled) // 3], shuffled[len(shuffled) // 3 :]
    for p in inventors:
        p.attrs["occupation"] = rng.choice(OCCUPATIONS_TECH)

    used_company: set[str] = set()
    for i in range(SIZES["company"]):
        founder = rng.choice(founders)
        if rng.random() < 0.5 and founder.attrs["occupation"] in OCCUPATIONS_OTHER:
            founder.attrs["occupation"] = rng.choice(OCCUPATIONS_BUSINESS)
        industry = rng.choice(INDUSTRIES)
        # Half the companies carry their founder's family name, as real firms often do; the
        # name pool guarantees the resulting company name is still unique.
        while True:
            stem = founder.name.split()[-1] if rng.random() < 0.5 else forge.word()
            name = f"{stem} {rng.choice(COMPANY_WORDS[industry])}"
            if name not in used_company:
                used_company.add(name)
                break
        year = founder.attrs["birth_year"] + rng.randint(22, 50)
        kb.add(Entity(f"company-{i:04d}", "company", name, {
            "founder": founder.id, "hq": rng.choice(towns).id, "founded_year": year,
            "industry": industry},
            extra={"branch_town": rng.choice(towns).id, "branch_year": year + rng.randint(3, 40),
                   "employees": rng.randint(12, 9000)}))
    companies = kb.by_type["company"]

    used_inv: set[str] = set()
    for i in range(SIZES["invention"]):
        inventor = rng.choice(inventors)
        while True:
            name = f"{forge.word(1, 2, min_len=5, max_len=9)} {rng.choice(DEVICES)}"
            if name not in used_inv:
                used_inv.add(name)
                break
        year = inventor.attrs["birth_year"] + rng.randint(20, 60)
        kb.add(Entity(f"invention-{i:04d}", "invention", name, {
            "inventor": inventor.id, "maker": rng.choice(companies).id, "year": year},
            extra={"improved_year": year + rng.randint(4, 30)}))
    return kb
