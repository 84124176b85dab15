"""The ``searchqa`` task set: an encyclopedia of invented entities and questions over it.

Files: ``corpus.jsonl`` (rows ``{"id", "title", "text"}``; one article per entity plus event
articles that only add noise) and the two splits. A task::

    {"id": "searchqa/00017", "question": "In which town was the founder of X born?",
     "answer": "Cenpiard", "split": "train",
     "metadata": {"aliases": [...], "hops": 2, "supporting_docs": ["company-0003", "person-0812"],
                  "relations": ["company.founder", "person.born_in"], "subject": "X",
                  "answer_entity": "town-0042", "answer_type": "town", "template": "..."}}

``supporting_docs`` lists the article read at each hop, in order; the last one states the answer.
Split: entities are hashed into a held-out pool; a held-out question's answer entity (or, for
literal answers, its subject) is in that pool, and a train question touches no pool entity at
all as subject or answer, so held-out answers are unseen entities.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from ._io import normalize_question, split_for, write_jsonl
from .search_kb import KB, RELATIONS, SEAS, Entity, generate

GENERATOR_VERSION = "searchqa-v1"
SEED = 771
HELDOUT_ENTITY_FRACTION = 0.2
TARGETS = {"train": {1: 1100, 2: 1000, 3: 500}, "heldout": {1: 200, 2: 180, 3: 100}}
N_EVENTS = 160


# --- articles ---------------------------------------------------------------------------------


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pron(e: Entity) -> tuple[str, str]:
    return ("she", "her") if e.extra.get("gender") == "f" else ("he", "his")


def _person_article(kb: KB, e: Entity, rng: random.Random, works: dict[str, list[Entity]]) -> str:
    a, x = e.attrs, e.extra
    she, her = _pron(e)
    town = kb.get(a["born_in"]).name
    school = kb.get(a["educated_at"]).mention
    occ = a["occupation"]
    art = "an" if occ[0] in "aeiou" else "a"
    intro = rng.choice([
        f"{e.name} ({a['birth_year']}–{x['death_year']}) was {art} {occ}.",
        f"{e.name} was {art} {occ}, born in {a['birth_year']} and died in {x['death_year']}.",
    ])
    facts = [
        rng.choice([f"{she.capitalize()} was born in {town}.", f"{e.name} was a native of {town}.",
                    f"Born in the town of {town}, {she} grew up there."]),
        rng.choice([f"{she.capitalize()} studied at {school}.", f"{her.capitalize()} education was at {school}.",
                    f"{she.capitalize()} was educated at {school}."]),
        rng.choice([f"In {x['married_year']} {she} married.", f"{she.capitalize()} married in {x['married_year']}."]),
        f"Around {x['moved_year']} {she} moved to {kb.get(x['moved_to']).name}.",
    ]
    for inv in works.get(("inventor", e.id), []):
        facts.append(f"{she.capitalize()} invented {inv.mention} in {inv.attrs['year']}.")
    for co in works.get(("founder", e.id), []):
        facts.append(f"In {co.attrs['founded_year']} {she} founded {co.name}.")
    rng.shuffle(facts)
    if a["born_in"] == x["moved_to"]:
        facts = [f for f in facts if "moved to" not in f]
    return " ".join([intro, *facts])


def _company_article(kb: KB, e: Entity, rng: random.Random, works: dict) -> str:
    a, x = e.attrs, e.extra
    founder, hq = kb.get(a["founder"]).name, kb.get(a["hq"]).name
    intro = rng.choice([
        f"{e.name} is a {a['industry']} manufacturer headquartered in {hq}.",
        f"{e.name} is a company in the {a['industry']} business, with its headquarters in {hq}.",
    ])
    facts = [
        rng.choice([f"It was founded in {a['founded_year']} by {founder}.",
                    f"{founder} established the firm in {a['founded_year']}.",
                    f"The company was started by {founder} in {a['founded_year']}."]),
        f"In {x['branch_year']} it opened a branch office in {kb.get(x['branch_town']).name}.",
        f"At its peak it employed about {_fmt_int(x['employees'])} people.",
    ]
    products = works.get(("maker", e.id), [])
    if products:
        facts.append("Its products include " + _join([p.mention for p in products]) + ".")
    rng.shuffle(facts)
    return " ".join([intro, *facts])


def _invention_article(kb: KB, e: Entity, rng: random.Random, works: dict) -> str:
    a, x = e.attrs, e.extra
    inventor, maker = kb.get(a["inventor"]).name, kb.get(a["maker"]).name
    cap = e.mention[0].upper() + e.mention[1:]
    intro = rng.choice([
        f"{cap} is a device invented by {inventor} in {a['year']}.",
        f"{cap} was invented in {a['year']} by {inventor}.",
    ])
    facts = [
        rng.choice([f"It is manufactured by {maker}.", f"{maker} manufactures it.",
                    f"Today it is made by {maker}."]),
        f"An improved version was patented in {x['improved_year']}.",
    ]
    rng.shuffle(facts)
    return " ".join([intro, *facts])


def _town_article(kb: KB, e: Entity, rng: random.Random, works: dict) -> str:
    a, x = e.attrs, e.extra
    river, region = kb.get(a["river"]).mention, kb.get(a["region"]).name
    intro = rng.choice([
        f"{e.name} is a town in {region}.",
        f"{e.name} is a town of {region}, founded in {a['founded_year']}.",
    ])
    facts = [
        rng.choice([f"It lies on {river}.", f"The town is situated on {river}.",
                    f"{e.name} stands on the banks of {river}."]),
        f"The town was founded in {a['founded_year']}.",
        rng.choice([f"It has a population of {_fmt_int(a['population'])}.",
                    f"Its current population is {_fmt_int(a['population'])}."]),
        f"In {x['old_population_year']} it had {_fmt_int(x['old_population'])} inhabitants.",
    ]
    natives = works.get(("born_in", e.id), [])[:3]
    if natives:
        facts.append("Notable natives include " + _join([p.name for p in natives]) + ".")
    rng.shuffle(facts)
    return " ".join([intro, *facts])


def _river_article(kb: KB, e: Entity, rng: random.Random, works: dict) -> str:
    a, x = e.attrs, e.extra
    mouth = x["mouth"] if x["mouth"] in SEAS else kb.get(x["mouth"]).mention
    src = kb.get(a["source"]).name
    cap = e.mention[0].upper() + e.mention[1:]
    facts = [
        rng.choice([f"It rises on {src}.", f"Its source is on the slopes of {src}."]),
        rng.choice([f"It is {a['length_km']} km long.", f"The river has a length of {a['length_km']} km."]),
        f"It flows into the {x['mouth']}." if x["mouth"] in SEAS else f"It is a tributary of {mouth}.",
        f"It is navigable for {x['navigable_km']} km.",
    ]
    rng.shuffle(facts)
    return " ".join([f"{cap} is a river.", *facts])


def _mountain_article(kb: KB, e: Entity, rng: random.Random, works: dict) -> str:
    a, x = e.attrs, e.extra
    region = kb.get(a["region"]).name
    facts = [
        rng.choice([f"It rises to {_fmt_int(a['height_m'])} m.", f"Its summit is {_fmt_int(a['height_m'])} m high."]),
        f"It was first climbed in {x['first_ascent']}.",
    ]
    rivers = works.get(("source", e.id), [])
    if rivers:
        facts.append("It is the source of " + _join([r.mention for r in rivers]) + ".")
    rng.shuffle(facts)
    return " ".join([f"{e.name} is a mountain in {region}.", *facts])


def _university_article(kb: KB, e: Entity, rng: random.Random, works: dict) -> str:
    a, x = e.attrs, e.extra
    cap = e.mention[0].upper() + e.mention[1:]
    facts = [
        rng.choice([f"It is located in {kb.get(a['town']).name}.", f"Its campus is in {kb.get(a['town']).name}."]),
        rng.choice([f"It was founded in {a['founded_year']}.", f"The school was established in {a['founded_year']}."]),
        f"Its library opened in {x['library_year']}.",
    ]
    rng.shuffle(facts)
    return " ".join([f"{cap} is an institution of higher learning.", *facts])


def _region_article(kb: KB, e: Entity, rng: random.Random, works: dict) -> str:
    a, x = e.attrs, e.extra
    facts = [
        rng.choice([f"Its capital is {kb.get(a['capital']).name}.",
                    f"The capital of {e.name} is {kb.get(a['capital']).name}."]),
        f"It covers {_fmt_int(x['area_km2'])} square kilometres.",
    ]
    if x["largest_town"] != a["capital"]:
        facts.append(f"Its largest town is {kb.get(x['largest_town']).name}.")
    rng.shuffle(facts)
    return " ".join([f"{e.name} is an administrative region.", *facts])


_WRITERS = {"person": _person_article, "company": _company_article, "invention": _invention_article,
            "town": _town_article, "river": _river_article, "mountain": _mountain_article,
            "university": _university_article, "region": _region_article}


def _event_articles(kb: KB, rng: random.Random) -> list[dict]:
    """Exhibition reports: true facts about many entities, so searches return near misses."""
    out, used = [], set()
    inventions = kb.by_type["invention"]
    for i in range(N_EVENTS):
        town = rng.choice(kb.by_type["town"])
        year = rng.randint(1760, 2010)
        title = f"{town.name} Exhibition of {year}"
        if title in used:
            continue
        used.add(title)
        shown = [v for v in rng.sample(inventions, 40) if v.attrs["year"] <= year][:4]
        parts = [f"The {title} was a trade fair held in {town.name} in {year}."]
        for v in shown:
            parts.append(f"Visitors saw {v.mention}, the work of {kb.get(v.attrs['inventor']).name}.")
        parts.append(f"It drew about {_fmt_int(rng.randint(2, 90) * 1000)} visitors.")
        out.append({"id": f"event-{i:04d}", "title": title, "text": " ".join(parts)})
    return out


def write_corpus(kb: KB, rng: random.Random) -> list[dict]:
    works: dict[tuple[str, str], list[Entity]] = defaultdict(list)
    for e in kb.entities.values():
        for rel in ("inventor", "founder", "maker", "born_in", "source"):
            if rel in e.attrs and isinstance(e.attrs[rel], str):
                works[(rel, e.attrs[rel])].append(e)
    docs = [{"id": e.id, "title": e.name, "text": _WRITERS[e.type](kb, e, rng, works)}
            for e in kb.entities.values()]
    return docs + _event_articles(kb, rng)


# --- questions --------------------------------------------------------------------------------

# How a relation reads when its value is the subject of a longer question ("the founder of X").
_NOUN_PHRASE = {
    "company.founder": "the founder of {}",
    "invention.inventor": "the inventor of {}",
    "invention.maker": "the company that manufactures {}",
    "person.born_in": "the birthplace of {}",
    "person.educated_at": "the institution attended by {}",
    "company.hq": "the town where {} has its headquarters",
    "town.river": "the river on which {} lies",
    "town.region": "the region containing {}",
    "river.source": "the mountain where {} rises",
    "mountain.region": "the region in which {} stands",
    "university.town": "the town where {} is located",
    "region.capital": "the capital of {}",
}

# How the final relation is asked.
_ASK = {
    "person.born_in": ["In which town was {} born?", "What is the birthplace of {}?"],
    "person.birth_year": ["In what year was {} born?", "What was the birth year of {}?"],
    "person.educated_at": ["Which institution did {} attend?", "Where was {} educated?"],
    "person.occupation": ["What was the profession of {}?", "What did {} do for a living?"],
    "company.founder": ["Who founded {}?", "Who was the founder of {}?"],
    "company.hq": ["In which town is {} headquartered?", "Where are the headquarters of {}?"],
    "company.founded_year": ["In what year was {} founded?"],
    "company.industry": ["What industry is {} in?"],
    "invention.inventor": ["Who invented {}?"],
    "invention.maker": ["Which company manufactures {}?"],
    "invention.year": ["In what year was {} invented?"],
    "town.river": ["On which river does {} lie?", "Which river flows through {}?"],
    "town.region": ["In which region is {}?"],
    "town.founded_year": ["In what year was {} founded?"],
    "town.population": ["What is the current population of {}?"],
    "river.source": ["On which mountain does {} rise?"],
    "river.length_km": ["How long is {}, in kilometres?"],
    "mountain.height_m": ["How high is {}, in metres?"],
    "mountain.region": ["In which region is {}?"],
    "university.town": ["In which town is {} located?"],
    "university.founded_year": ["In what year was {} founded?"],
    "region.capital": ["What is the capital of {}?"],
}


def chains(max_hops: int = 3) -> list[tuple[str, ...]]:
    """Every well-typed relation path: intermediate hops must land on entities."""
    out: list[tuple[str, ...]] = []

    def extend(path: tuple[str, ...], at_type: str) -> None:
        for rel, (src, dst) in RELATIONS.items():
            if src != at_type:
                continue
            out.append(path + (rel,))
            if len(path) + 1 < max_hops and not dst.startswith("literal") and rel in _NOUN_PHRASE:
                extend(path + (rel,), dst)

    for etype in sorted({src for src, _ in RELATIONS.values()}):
        extend((), etype)
    return out


def _aliases(kb: KB, value: Any, kind: str) -> list[str]:
    if kind in {"literal:year"}:
        return [str(value)]
    if kind == "literal:count":
        return list(dict.fromkeys([str(value), _fmt_int(value)]))
    if kind in {"literal:km", "literal:m"}:
        unit = kind.split(":")[1]
        return list(dict.fromkeys([str(value), _fmt_int(value), f"{value} {unit}",
                                   f"{_fmt_int(value)} {unit}"]))
    if kind.startswith("literal"):
        return [str(value)]
    e = kb.get(value)
    out = [e.name, e.mention]
    # The invented word alone ("Aba" for "Aba River") is unambiguous: name words are unique.
    if e.type == "mountain" and e.name.startswith("Mount "):
        out.append(e.name.removeprefix("Mount "))
    elif e.type in {"river", "mountain", "region", "university"}:
        out.append(e.name.rsplit(" ", 1)[0])
    return list(dict.fromkeys(out))


def _answer_str(kb: KB, value: Any, kind: str) -> str:
    return str(value) if kind.startswith("literal") else kb.get(value).name


def make_questions(kb: KB, rng: random.Random) -> dict[str, list[dict]]:
    def pooled(eid: str) -> bool:
        return split_for(eid, HELDOUT_ENTITY_FRACTION, salt=GENERATOR_VERSION) == "heldout"

    # Candidates grouped by (split, hops, chain) so sampling can balance the chains.
    cands: dict[tuple[str, int, tuple[str, ...]], list[dict]] = defaultdict(list)
    for chain in chains():
        start_type = RELATIONS[chain[0]][0]
        for subj in kb.by_type[start_type]:
            path, cur = [subj.id], subj
            for rel in chain:
                value = kb.value(cur, rel)
                kind = RELATIONS[rel][1]
                if kind.startswith("literal"):
                    break
                path.append(value)
                cur = kb.get(value)
            if len(set(path)) != len(path):
                continue  # e.g. the capital's region is the region we started from
            answer_entity = "" if kind.startswith("literal") else value
            if answer_entity:
                split = "heldout" if pooled(answer_entity) else "train"
            else:
                split = "heldout" if pooled(subj.id) else "train"
            if split == "train" and pooled(subj.id):
                continue  # train never starts from a held-out entity either
            np_text = subj.mention
            for rel in chain[:-1]:
                np_text = _NOUN_PHRASE[rel].format(np_text)
            question = rng.choice(_ASK[chain[-1]]).format(np_text)
            question = question[0].upper() + question[1:]
            # Docs read in order: each hop's fact is in the article of the entity it starts at.
            support = [eid for eid in path[: len(chain)]]
            cands[(split, len(chain), chain)].append({
                "question": question,
                "answer": _answer_str(kb, value, kind),
                "aliases": _aliases(kb, value, kind),
                "support": support,
                "chain": chain,
                "subject": subj.name,
                "answer_entity": answer_entity,
                "answer_type": kb.get(value).type if answer_entity else kind.split(":")[1],
            })

    out: dict[str, list[dict]] = {"train": [], "heldout": []}
    seen: set[str] = set()
    for split, per_hop in TARGETS.items():
        for hops, want in per_hop.items():
            groups = [cands[k] for k in sorted(cands) if k[0] == split and k[1] == hops]
            for g in groups:
                rng.shuffle(g)
            picked: list[dict] = []
            # Round-robin over chains so no single relation path dominates.
            while len(picked) < want and any(groups):
                for g in groups:
                    while g:
                        c = g.pop()
                        key = normalize_question(c["question"])
                        if key not in seen:
                            seen.add(key)
                            picked.append(c)
                            break
                    if len(picked) >= want:
                        break
            out[split].extend(picked)
        rng.shuffle(out[split])
    return out


def build(out_dir: Path) -> dict[str, list[dict]]:
    kb = generate(SEED)
    rng = random.Random(f"{SEED}:prose")
    docs = write_corpus(kb, rng)
    write_jsonl(out_dir / "corpus.jsonl", docs)
    qs = make_questions(kb, random.Random(f"{SEED}:questions"))
    rows: dict[str, list[dict]] = {}
    n = 0
    for split in ("train", "heldout"):
        rows[split] = []
        for c in qs[split]:
            rows[split].append({
                "id": f"searchqa/{n:05d}",
                "question": c["question"],
                "answer": c["answer"],
                "split": split,
                "metadata": {
                    "aliases": c["aliases"],
                    "hops": len(c["chain"]),
                    "supporting_docs": c["support"],
                    "relations": list(c["chain"]),
                    "template": ">".join(c["chain"]),
                    "subject": c["subject"],
                    "answer_entity": c["answer_entity"],
                    "answer_type": c["answer_type"],
                },
            })
            n += 1
    return rows
