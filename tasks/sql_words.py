"""Word lists for realistic-looking SQL data (people, places, products)."""

from __future__ import annotations

import random

FIRST_NAMES = """
James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard
Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty
Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua
Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald
Rebecca Jason Laura Edward Helen Jeffrey Sharon Ryan Cynthia Jacob Kathleen Gary Amy Nicholas
Angela Eric Shirley Jonathan Anna Stephen Brenda Larry Pamela Justin Emma Scott Nicole Brandon
Samantha Benjamin Katherine Samuel Christine Gregory Debra Alexander Rachel Frank Carolyn
Raymond Janet Patrick Maria Jack Olivia Dennis Heather Jerry Diane Tyler Julie Aaron Joyce
Priya Wei Hiroshi Ana Luis Fatima Omar Ingrid Sven Chloe Mateo Aisha Yuki Noah Leila Ivan
""".split()

LAST_NAMES = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips
Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers
Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson
Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo
Sanders Patel Myers Long Ross Foster Jimenez Tanaka Mueller Novak Larsen Rossi Dubois Silva
""".split()

CITIES = """
Springfield Riverside Fairview Madison Georgetown Arlington Salem Clinton Franklin Greenville
Bristol Oxford Dover Ashland Burlington Manchester Milton Newport Auburn Dayton Lexington
Hudson Kingston Marion Oakland Jackson Winchester Chester Lancaster Camden Portland Trenton
""".split()

COUNTRIES = ("USA", "Canada", "UK", "Germany", "France", "Spain", "Italy", "Japan", "Brazil",
             "India", "Australia", "Mexico", "Sweden", "Norway", "Netherlands", "Korea")

ADJECTIVES = """
Silent Golden Hidden Broken Crimson Distant Electric Frozen Gentle Hollow Iron Lonely Midnight
Northern Paper Quiet Restless Scarlet Secret Shining Silver Velvet Wandering Wild Winter Burning
Endless Falling Forgotten Glass Last Little Lost Painted Rising Summer Sweet Twisted Wooden
""".split()

NOUNS = """
River Garden Mirror Harbor Forest Signal Lantern Compass Horizon Orchard Bridge Canyon Echo Ember
Meadow Mountain Ocean Shadow Storm Tide Valley Voyage Window Whisper Kingdom Letter Island City
Season Machine Station Crown Circle Engine Empire Star Dream Fire Road
""".split()


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def unique_names(rng: random.Random, n: int, make=person_name) -> list[str]:
    """``n`` distinct values from ``make`` (labels must identify one row)."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen.setdefault(make(rng), None)
    return list(seen)


def title(rng: random.Random) -> str:
    return f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"


def email(name: str, i: int, domain: str) -> str:
    first, last = name.lower().split()[0], name.lower().split()[-1]
    return f"{first}.{last}{i}@{domain}"
