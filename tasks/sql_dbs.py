"""The eight generated SQLite databases: schemas, data, and a few domain-specific templates.

Data are drawn from a seeded RNG with the correlations a real database has (an order ships
after it is placed, a line item's price is the product's price at the time, a loan's return
date is NULL while the book is out), so that questions about them have sensible answers.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from typing import Callable

from .sql_schema import (CAT, DATE, FK, LABEL, NUM, PK, TEXT, Col, Database, Table, iso, maybe,
                         rand_date)
from .sql_words import (ADJECTIVES, CITIES, COUNTRIES, NOUNS, email, person_name, title,
                        unique_names)

D = dt.date


def _one(conn: sqlite3.Connection, sql: str, args: tuple = ()) -> list[tuple]:
    return conn.execute(sql, args).fetchall()


# --- store ------------------------------------------------------------------------------------

_PRODUCTS = {
    "Electronics": ("Headphones", "Charger", "Speaker", "Keyboard", "Mouse", "Monitor", "Webcam"),
    "Kitchen": ("Kettle", "Blender", "Toaster", "Frying Pan", "Knife Set", "Coffee Grinder"),
    "Home": ("Desk Lamp", "Rug", "Pillow", "Curtains", "Wall Clock", "Bookshelf"),
    "Sports": ("Yoga Mat", "Dumbbells", "Tennis Racket", "Water Bottle", "Running Shoes"),
    "Toys": ("Puzzle", "Building Blocks", "Kite", "Board Game", "Plush Bear"),
    "Garden": ("Hose", "Shovel", "Planter", "Pruning Shears", "Bird Feeder"),
}
_BRANDS = ("Acme", "Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbra", "Vertex",
           "Zenith", "Orbit")


def store(rng: random.Random) -> Database:
    t_customers = Table("customers", "customer", "customers", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"), Col("email", "TEXT"),
        Col("city", "TEXT", CAT, "city"), Col("signup_date", "TEXT", DATE, "signup date"),
        Col("loyalty_tier", "TEXT", CAT, "loyalty tier", nullable=True)))
    t_products = Table("products", "product", "products", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("category", "TEXT", CAT, "category"), Col("price", "REAL", NUM, "price"),
        Col("stock", "INTEGER", NUM, "stock quantity")))
    t_orders = Table("orders", "order", "orders", (
        Col("id", "INTEGER", PK),
        Col("customer_id", "INTEGER", FK, ref="customers",
            phrase="orders placed by {p}", rel="orders"),
        Col("order_date", "TEXT", DATE, "order date"), Col("status", "TEXT", CAT, "status"),
        Col("shipped_date", "TEXT", DATE, "shipped date", nullable=True)))
    t_items = Table("order_items", "order item", "order items", (
        Col("id", "INTEGER", PK),
        Col("order_id", "INTEGER", FK, ref="orders", phrase="order items in {p}", rel="items"),
        Col("product_id", "INTEGER", FK, ref="products",
            phrase="order items for {p}", rel="order items"),
        Col("quantity", "INTEGER", NUM, "quantity"), Col("unit_price", "REAL", NUM, "unit price")))

    names = unique_names(rng, 420)
    customers = [(i + 1, n, email(n, i, "mail.example"), rng.choice(CITIES),
                  iso(rand_date(rng, D(2018, 1, 1), D(2023, 6, 30))),
                  maybe(rng, 0.3, rng.choice(["Bronze", "Silver", "Gold", "Platinum"])))
                 for i, n in enumerate(names)]
    products, seen = [], set()
    while len(products) < 150:
        cat = rng.choice(sorted(_PRODUCTS))
        name = f"{rng.choice(_BRANDS)} {rng.choice(_PRODUCTS[cat])}"
        if rng.random() < 0.5:
            name += f" {rng.choice(['Pro', 'Mini', 'Max', 'Lite', 'Plus', 'XL'])}"
        if name in seen:
            continue
        seen.add(name)
        products.append((len(products) + 1, name, cat, round(rng.uniform(4, 400), 2),
                         rng.randint(0, 500)))
    orders, items = [], []
    for oid in range(1, 1801):
        cust = rng.choice(customers)
        start = D.fromisoformat(cust[4])
        od = rand_date(rng, start, D(2024, 12, 31))
        status = rng.choices(["delivered", "shipped", "pending", "cancelled", "returned"],
                             [60, 15, 10, 10, 5])[0]
        shipped = None if status in {"pending", "cancelled"} else od + dt.timedelta(rng.randint(0, 9))
        orders.append((oid, cust[0], iso(od), status, iso(shipped)))
        for prod in rng.sample(products, rng.randint(1, 4)):
            # Line items record the price paid, which drifts from today's list price.
            items.append((len(items) + 1, oid, prod[0], rng.randint(1, 5),
                          round(prod[3] * rng.choice([1, 1, 1, 0.9, 0.8, 1.1]), 2)))

    def revenue_by_category(conn: sqlite3.Connection, r: random.Random):
        cat = r.choice(sorted(_PRODUCTS))
        year = r.randint(2019, 2024)
        return ("store/revenue_category_year", "hard",
                f"What was the total revenue (quantity times unit price, rounded to 2 decimal "
                f"places) from {cat} products in delivered orders placed in {year}?",
                "SELECT ROUND(SUM(oi.quantity * oi.unit_price), 2) FROM order_items oi "
                "JOIN orders o ON oi.order_id = o.id JOIN products p ON oi.product_id = p.id "
                f"WHERE p.category = '{cat}' AND o.status = 'delivered' "
                f"AND strftime('%Y', o.order_date) = '{year}'", False)

    def slow_shipping(conn: sqlite3.Connection, r: random.Random):
        n = r.randint(2, 8)
        return ("store/slow_shipping", "easy",
                f"How many orders were shipped more than {n} days after they were placed?",
                "SELECT COUNT(*) FROM orders WHERE shipped_date IS NOT NULL AND "
                f"julianday(shipped_date) - julianday(order_date) > {n}", False)

    def top_spender(conn: sqlite3.Connection, r: random.Random):
        year = r.randint(2019, 2024)
        return ("store/top_spender_year", "hard",
                f"Which customer spent the most money (sum of quantity times unit price over all "
                f"their orders) in {year}? Give the customer's name.",
                "SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id "
                "JOIN order_items oi ON oi.order_id = o.id "
                f"WHERE strftime('%Y', o.order_date) = '{year}' "
                "GROUP BY c.id ORDER BY SUM(oi.quantity * oi.unit_price) DESC LIMIT 1", False)

    return Database("store", "An online shop: customers, products, orders and their line items.",
                    (t_customers, t_products, t_orders, t_items),
                    {"customers": customers, "products": products, "orders": orders,
                     "order_items": items},
                    (revenue_by_category, slow_shipping, top_spender))


# --- school -----------------------------------------------------------------------------------

_SUBJECTS = {
    "Mathematics": ("Calculus", "Linear Algebra", "Number Theory", "Statistics", "Topology"),
    "Physics": ("Mechanics", "Electromagnetism", "Quantum Physics", "Optics", "Thermodynamics"),
    "Computer Science": ("Algorithms", "Databases", "Operating Systems", "Compilers", "Networks"),
    "History": ("Ancient History", "Medieval Europe", "Modern Asia", "Economic History"),
    "Biology": ("Genetics", "Ecology", "Cell Biology", "Microbiology", "Neuroscience"),
    "Literature": ("Poetry", "The Novel", "Drama", "Literary Theory", "World Literature"),
    "Economics": ("Microeconomics", "Macroeconomics", "Econometrics", "Game Theory"),
    "Chemistry": ("Organic Chemistry", "Physical Chemistry", "Biochemistry", "Analytical Chemistry"),
}


def school(rng: random.Random) -> Database:
    t_dept = Table("departments", "department", "departments", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("building", "TEXT", CAT, "building")))
    t_teach = Table("teachers", "teacher", "teachers", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("department_id", "INTEGER", FK, ref="departments",
            phrase="teachers in {p}", rel="teachers"),
        Col("rank", "TEXT", CAT, "academic rank"), Col("hire_date", "TEXT", DATE, "hire date"),
        Col("salary", "INTEGER", NUM, "salary")))
    t_course = Table("courses", "course", "courses", (
        Col("id", "INTEGER", PK), Col("title", "TEXT", LABEL, "title"),
        Col("department_id", "INTEGER", FK, ref="departments",
            phrase="courses offered by {p}", rel="courses"),
        Col("teacher_id", "INTEGER", FK, ref="teachers", nullable=True,
            phrase="courses taught by {p}", rel="courses"),
        Col("credits", "INTEGER", NUM, "credits"), Col("level", "TEXT", CAT, "level")))
    t_stud = Table("students", "student", "students", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("birth_date", "TEXT", DATE, "birth date"),
        Col("enrollment_year", "INTEGER", NUM, "enrollment year"),
        Col("major_id", "INTEGER", FK, ref="departments", nullable=True,
            phrase="students majoring in {p}", rel="majoring students"),
        Col("gpa", "REAL", NUM, "GPA", nullable=True)))
    t_enr = Table("enrollments", "enrollment", "enrollments", (
        Col("id", "INTEGER", PK),
        Col("student_id", "INTEGER", FK, ref="students",
            phrase="enrollments of {p}", rel="enrollments"),
        Col("course_id", "INTEGER", FK, ref="courses", phrase="enrollments in {p}", rel="enrollments"),
        Col("semester", "TEXT", CAT, "semester"),
        Col("grade", "TEXT", CAT, "grade", nullable=True),
        Col("score", "INTEGER", NUM, "score", nullable=True)))

    depts = [(i + 1, f"Department of {s}", f"{rng.choice(['North', 'South', 'East', 'West', 'Main'])} Hall")
             for i, s in enumerate(sorted(_SUBJECTS))]
    teacher_names = unique_names(rng, 120)
    teachers = [(i + 1, n, rng.randint(1, len(depts)),
                 rng.choice(["Lecturer", "Assistant Professor", "Associate Professor", "Professor"]),
                 iso(rand_date(rng, D(1995, 1, 1), D(2023, 8, 31))), rng.randrange(52_000, 180_000, 500))
                for i, n in enumerate(teacher_names)]
    courses = []
    for d in depts:
        subject = d[1].removeprefix("Department of ")
        for topic in _SUBJECTS[subject]:
            for lvl, tag in (("Introductory", "I"), ("Advanced", "II")):
                staff = [t for t in teachers if t[2] == d[0]]
                courses.append((len(courses) + 1, f"{topic} {tag}", d[0],
                                maybe(rng, 0.1, rng.choice(staff)[0] if staff else None),
                                rng.choice([2, 3, 3, 4, 5]), lvl))
    students = []
    for i, n in enumerate(unique_names(rng, 900)):
        year = rng.randint(2016, 2024)
        students.append((i + 1, n, iso(rand_date(rng, D(year - 20, 1, 1), D(year - 17, 12, 31))),
                         year, maybe(rng, 0.15, rng.randint(1, len(depts))),
                         maybe(rng, 0.05, round(rng.uniform(1.8, 4.0), 2))))
    enrollments, seen = [], set()
    grade_of = [(90, "A"), (80, "B"), (70, "C"), (60, "D"), (0, "F")]
    for s in students:
        for c in rng.sample(courses, rng.randint(2, 7)):
            if (s[0], c[0]) in seen:
                continue
            seen.add((s[0], c[0]))
            sem = f"{rng.choice(['Fall', 'Spring'])} {rng.randint(max(s[3], 2019), 2025)}"
            score = None if sem.endswith("2025") else rng.randint(35, 100)
            grade = None if score is None else next(g for lo, g in grade_of if score >= lo)
            enrollments.append((len(enrollments) + 1, s[0], c[0], sem, grade, score))

    def full_courses(conn: sqlite3.Connection, r: random.Random):
        n = r.randint(20, 45)
        return ("school/popular_courses", "hard",
                f"Which courses have more than {n} enrolled students who received a grade of A? "
                "Give the course titles.",
                "SELECT c.title FROM courses c JOIN enrollments e ON e.course_id = c.id "
                f"WHERE e.grade = 'A' GROUP BY c.id HAVING COUNT(*) > {n}", False)

    def dept_avg_gpa(conn: sqlite3.Connection, r: random.Random):
        return ("school/avg_gpa_by_major", "medium",
                "For each department, what is the average GPA of the students majoring in it, "
                "rounded to 2 decimal places? Give the department name and the average.",
                "SELECT d.name, ROUND(AVG(s.gpa), 2) FROM departments d JOIN students s "
                "ON s.major_id = d.id GROUP BY d.id", False)

    return Database("school", "A university: departments, teachers, courses, students, enrollments.",
                    (t_dept, t_teach, t_course, t_stud, t_enr),
                    {"departments": depts, "teachers": teachers, "courses": courses,
                     "students": students, "enrollments": enrollments},
                    (full_courses, dept_avg_gpa))


# --- hospital ---------------------------------------------------------------------------------

_SPECIALTIES = {"Cardiology": ("cardiologist",), "Neurology": ("neurologist",),
                "Pediatrics": ("pediatrician",), "Oncology": ("oncologist",),
                "Orthopedics": ("orthopedic surgeon", "sports medicine"),
                "Dermatology": ("dermatologist",), "Emergency": ("emergency physician", "trauma surgeon"),
                "General Medicine": ("general practitioner", "internist")}
_DRUGS = ("Amoxicillin", "Ibuprofen", "Metformin", "Lisinopril", "Atorvastatin", "Omeprazole",
          "Sertraline", "Prednisone", "Azithromycin", "Levothyroxine", "Amlodipine", "Gabapentin")


def hospital(rng: random.Random) -> Database:
    t_dept = Table("departments", "department", "departments", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("floor", "INTEGER", NUM, "floor")))
    t_doc = Table("doctors", "doctor", "doctors", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("department_id", "INTEGER", FK, ref="departments", phrase="doctors in {p}", rel="doctors"),
        Col("specialty", "TEXT", CAT, "specialty"), Col("hire_date", "TEXT", DATE, "hire date"),
        Col("salary", "INTEGER", NUM, "salary")))
    t_pat = Table("patients", "patient", "patients", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("birth_date", "TEXT", DATE, "birth date"), Col("sex", "TEXT", CAT, "sex"),
        Col("city", "TEXT", CAT, "city"),
        Col("blood_type", "TEXT", CAT, "blood type", nullable=True),
        Col("insurer", "TEXT", CAT, "insurance provider", nullable=True)))
    t_app = Table("appointments", "appointment", "appointments", (
        Col("id", "INTEGER", PK),
        Col("patient_id", "INTEGER", FK, ref="patients",
            phrase="appointments of {p}", rel="appointments"),
        Col("doctor_id", "INTEGER", FK, ref="doctors",
            phrase="appointments with {p}", rel="appointments"),
        Col("appt_date", "TEXT", DATE, "appointment date"), Col("status", "TEXT", CAT, "status"),
        Col("fee", "REAL", NUM, "fee")))
    t_rx = Table("prescriptions", "prescription", "prescriptions", (
        Col("id", "INTEGER", PK),
        Col("appointment_id", "INTEGER", FK, ref="appointments",
            phrase="prescriptions written at {p}", rel="prescriptions"),
        Col("drug", "TEXT", CAT, "drug"), Col("dose_mg", "INTEGER", NUM, "dose in mg"),
        Col("days", "INTEGER", NUM, "duration in days")))

    depts = [(i + 1, n, rng.randint(1, 9)) for i, n in enumerate(sorted(_SPECIALTIES))]
    doctors = []
    for i, n in enumerate(unique_names(rng, 90)):
        d = rng.choice(depts)
        doctors.append((i + 1, "Dr. " + n, d[0], rng.choice(_SPECIALTIES[d[1]]),
                        iso(rand_date(rng, D(1998, 1, 1), D(2023, 12, 31))),
                        rng.randrange(120_000, 420_000, 1000)))
    patients = [(i + 1, n, iso(rand_date(rng, D(1935, 1, 1), D(2022, 12, 31))),
                 rng.choice(["F", "M"]), rng.choice(CITIES),
                 maybe(rng, 0.25, rng.choice(["O+", "O-", "A+", "A-", "B+", "B-", "AB+", "AB-"])),
                 maybe(rng, 0.2, rng.choice(["Aetna", "Cigna", "UnitedHealth", "Humana", "Kaiser"])))
                for i, n in enumerate(unique_names(rng, 1100))]
    appts, rx = [], []
    for aid in range(1, 3201):
        status = rng.choices(["completed", "cancelled", "no-show", "scheduled"], [75, 10, 7, 8])[0]
        day = rand_date(rng, D(2021, 1, 1), D(2024, 12, 31) if status != "scheduled" else D(2025, 6, 30))
        appts.append((aid, rng.choice(patients)[0], rng.choice(doctors)[0], iso(day), status,
                      float(rng.choice([80, 120, 150, 200, 250, 300, 450]))))
        if status == "completed":
            for drug in rng.sample(_DRUGS, rng.choice([0, 0, 1, 1, 2, 3])):
                rx.append((len(rx) + 1, aid, drug, rng.choice([5, 10, 20, 25, 50, 100, 250, 500]),
                           rng.choice([3, 5, 7, 10, 14, 30, 90])))

    def busiest_doctor(conn: sqlite3.Connection, r: random.Random):
        year = r.randint(2021, 2024)
        return ("hospital/busiest_doctor_year", "hard",
                f"Which doctor had the most completed appointments in {year}? Give the doctor's name.",
                "SELECT d.name FROM doctors d JOIN appointments a ON a.doctor_id = d.id "
                f"WHERE a.status = 'completed' AND strftime('%Y', a.appt_date) = '{year}' "
                "GROUP BY d.id ORDER BY COUNT(*) DESC LIMIT 1", False)

    def drug_patients(conn: sqlite3.Connection, r: random.Random):
        drug = r.choice(_DRUGS)
        return ("hospital/patients_on_drug", "hard",
                f"How many distinct patients have been prescribed {drug}?",
                "SELECT COUNT(DISTINCT a.patient_id) FROM prescriptions p JOIN appointments a "
                f"ON p.appointment_id = a.id WHERE p.drug = '{drug}'", False)

    return Database("hospital", "A hospital: departments, doctors, patients, appointments, prescriptions.",
                    (t_dept, t_doc, t_pat, t_app, t_rx),
                    {"departments": depts, "doctors": doctors, "patients": patients,
                     "appointments": appts, "prescriptions": rx},
                    (busiest_doctor, drug_patients))


# --- library ----------------------------------------------------------------------------------

_GENRES = ("Mystery", "Science Fiction", "Fantasy", "Romance", "History", "Biography", "Poetry",
           "Thriller", "Philosophy", "Travel")


def library(rng: random.Random) -> Database:
    t_auth = Table("authors", "author", "authors", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("country", "TEXT", CAT, "country"), Col("birth_year", "INTEGER", NUM, "birth year")))
    t_book = Table("books", "book", "books", (
        Col("id", "INTEGER", PK), Col("title", "TEXT", LABEL, "title"),
        Col("author_id", "INTEGER", FK, ref="authors", phrase="books written by {p}", rel="books"),
        Col("genre", "TEXT", CAT, "genre"),
        Col("published_year", "INTEGER", NUM, "publication year"),
        Col("pages", "INTEGER", NUM, "number of pages"), Col("isbn", "TEXT")))
    t_mem = Table("members", "member", "members", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("join_date", "TEXT", DATE, "join date"), Col("city", "TEXT", CAT, "city"),
        Col("email", "TEXT", TEXT, "email address", nullable=True)))
    t_loan = Table("loans", "loan", "loans", (
        Col("id", "INTEGER", PK),
        Col("book_id", "INTEGER", FK, ref="books", phrase="loans of {p}", rel="loans"),
        Col("member_id", "INTEGER", FK, ref="members", phrase="loans by {p}", rel="loans"),
        Col("loan_date", "TEXT", DATE, "loan date"), Col("due_date", "TEXT", DATE, "due date"),
        Col("return_date", "TEXT", DATE, "return date", nullable=True)))

    authors = [(i + 1, n, rng.choice(COUNTRIES), rng.randint(1850, 1995))
               for i, n in enumerate(unique_names(rng, 160))]
    titles = unique_names(rng, 700, make=lambda r: title(r) if r.random() < 0.5 else
                          f"{r.choice(NOUNS)} of the {r.choice(ADJECTIVES)} {r.choice(NOUNS)}")
    books = []
    for i, t in enumerate(titles):
        a = rng.choice(authors)
        books.append((i + 1, t, a[0], rng.choice(_GENRES), min(2024, a[3] + rng.randint(22, 70)),
                      rng.randint(90, 900), f"978-{rng.randint(0, 9)}-{rng.randint(10000, 99999)}-"
                      f"{rng.randint(100, 999)}-{rng.randint(0, 9)}"))
    members = []
    for i, n in enumerate(unique_names(rng, 500)):
        members.append((i + 1, n, iso(rand_date(rng, D(2015, 1, 1), D(2024, 6, 30))),
                        rng.choice(CITIES), maybe(rng, 0.3, email(n, i, "library.example"))))
    loans = []
    for lid in range(1, 2601):
        m = rng.choice(members)
        ld = rand_date(rng, max(D.fromisoformat(m[2]), D(2019, 1, 1)), D(2024, 12, 31))
        due = ld + dt.timedelta(days=21)
        ret = None if (ld > D(2024, 11, 15) and rng.random() < 0.7) or rng.random() < 0.05 \
            else ld + dt.timedelta(days=rng.randint(1, 40))
        loans.append((lid, rng.choice(books)[0], m[0], iso(ld), iso(due), iso(ret)))

    def overdue(conn: sqlite3.Connection, r: random.Random):
        year = r.randint(2019, 2024)
        return ("library/late_returns", "easy",
                f"How many loans made in {year} were returned after their due date?",
                "SELECT COUNT(*) FROM loans WHERE return_date IS NOT NULL AND return_date > due_date "
                f"AND strftime('%Y', loan_date) = '{year}'", False)

    def genre_readers(conn: sqlite3.Connection, r: random.Random):
        genre = r.choice(_GENRES)
        city = r.choice(CITIES)
        return ("library/genre_city_members", "hard",
                f"List the names of members from {city} who have borrowed at least one "
                f"{genre} book.",
                f"SELECT name FROM members WHERE city = '{city}' AND id IN (SELECT l.member_id "
                f"FROM loans l JOIN books b ON l.book_id = b.id WHERE b.genre = '{genre}')", False)

    return Database("library", "A public library: authors, books, members and loans.",
                    (t_auth, t_book, t_mem, t_loan),
                    {"authors": authors, "books": books, "members": members, "loans": loans},
                    (overdue, genre_readers))


# --- flights ----------------------------------------------------------------------------------


def flights(rng: random.Random) -> Database:
    t_air = Table("airports", "airport", "airports", (
        Col("id", "INTEGER", PK), Col("code", "TEXT", LABEL, "code"), Col("name", "TEXT"),
        Col("city", "TEXT", CAT, "city"), Col("country", "TEXT", CAT, "country")))
    t_line = Table("airlines", "airline", "airlines", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("country", "TEXT", CAT, "country"), Col("founded_year", "INTEGER", NUM, "founding year")))
    t_fl = Table("flights", "flight", "flights", (
        Col("id", "INTEGER", PK), Col("flight_number", "TEXT", LABEL, "flight number"),
        Col("airline_id", "INTEGER", FK, ref="airlines",
            phrase="flights operated by {p}", rel="flights"),
        Col("origin_id", "INTEGER", FK, ref="airports",
            phrase="flights departing from {p}", rel="departing flights"),
        Col("dest_id", "INTEGER", FK, ref="airports",
            phrase="flights arriving at {p}", rel="arriving flights"),
        Col("departure_date", "TEXT", DATE, "departure date"),
        Col("duration_min", "INTEGER", NUM, "duration in minutes"),
        Col("status", "TEXT", CAT, "status"),
        Col("delay_min", "INTEGER", NUM, "delay in minutes", nullable=True)))
    t_pax = Table("passengers", "passenger", "passengers", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("nationality", "TEXT", CAT, "nationality"),
        Col("birth_date", "TEXT", DATE, "birth date")))
    t_book = Table("bookings", "booking", "bookings", (
        Col("id", "INTEGER", PK),
        Col("flight_id", "INTEGER", FK, ref="flights", phrase="bookings on {p}", rel="bookings"),
        Col("passenger_id", "INTEGER", FK, ref="passengers",
            phrase="bookings made by {p}", rel="bookings"),
        Col("seat_class", "TEXT", CAT, "seat class"), Col("price", "REAL", NUM, "price")))

    letters = "ABCDEFGHJKLMNPRSTVWXYZ"
    codes = unique_names(rng, 45, make=lambda r: "".join(r.choice(letters) for _ in range(3)))
    cities = unique_names(rng, 45, make=lambda r: r.choice(CITIES)
                          + r.choice(["", " Heights", " Falls", " Bay", " Park"]))
    airports = [(i + 1, c, f"{cities[i]} {rng.choice(['International', 'Regional', 'Municipal'])} Airport",
                 cities[i], rng.choice(COUNTRIES)) for i, c in enumerate(codes)]
    carriers = ("Air", "Airways", "Airlines", "Wings", "Jet")
    line_names = unique_names(rng, 14, make=lambda r: f"{r.choice(ADJECTIVES)} {r.choice(carriers)}")
    airlines = [(i + 1, n, rng.choice(COUNTRIES), rng.randint(1925, 2015)) for i, n in enumerate(line_names)]
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    prefixes = unique_names(rng, len(airlines), make=lambda r: r.choice(letters) + r.choice(letters))
    fl, numbers = [], set()
    for fid in range(1, 1501):
        a = rng.randrange(len(airlines))
        while True:
            num = f"{prefixes[a]}{rng.randint(100, 9999)}"
            if num not in numbers:
                numbers.add(num)
                break
        o, d = rng.sample(airports, 2)
        status = rng.choices(["landed", "delayed", "cancelled", "scheduled"], [70, 15, 5, 10])[0]
        if status == "delayed":
            delay = rng.randint(15, 300)
        else:  # no delay is known for flights that never flew
            delay = None if status in {"cancelled", "scheduled"} else rng.choice([0, 0, 0, 5, 10])
        fl.append((fid, num, a + 1, o[0], d[0], iso(rand_date(rng, D(2022, 1, 1), D(2024, 12, 31))),
                   rng.randint(45, 900), status, delay))
    pax = [(i + 1, n, rng.choice(COUNTRIES), iso(rand_date(rng, D(1940, 1, 1), D(2015, 12, 31))))
           for i, n in enumerate(unique_names(rng, 1300))]
    bookings = []
    for bid in range(1, 4001):
        f = rng.choice(fl)
        cls = rng.choices(["economy", "premium economy", "business", "first"], [70, 12, 14, 4])[0]
        base = f[6] * rng.uniform(0.8, 1.6)
        mult = {"economy": 1, "premium economy": 1.6, "business": 3.5, "first": 6}[cls]
        bookings.append((bid, f[0], rng.choice(pax)[0], cls, round(base * mult, 2)))

    def route_count(conn: sqlite3.Connection, r: random.Random):
        o, d = r.sample(airports, 2)
        return ("flights/route_count", "medium",
                f"How many flights went from the airport with code {o[1]} or to the airport with "
                f"code {d[1]}?",
                "SELECT COUNT(*) FROM flights f JOIN airports o ON f.origin_id = o.id "
                f"JOIN airports d ON f.dest_id = d.id WHERE o.code = '{o[1]}' OR d.code = '{d[1]}'",
                False)

    def avg_delay_airline(conn: sqlite3.Connection, r: random.Random):
        return ("flights/avg_delay_by_airline", "medium",
                "For each airline, what is the average delay in minutes of its delayed flights, "
                "rounded to 1 decimal place? Give the airline name and the average.",
                "SELECT al.name, ROUND(AVG(f.delay_min), 1) FROM airlines al JOIN flights f ON "
                "f.airline_id = al.id WHERE f.status = 'delayed' GROUP BY al.id", False)

    def domestic(conn: sqlite3.Connection, r: random.Random):
        c = r.choice(COUNTRIES)
        return ("flights/domestic", "hard",
                f"How many flights connect two airports that are both in {c}?",
                "SELECT COUNT(*) FROM flights f JOIN airports o ON f.origin_id = o.id JOIN airports "
                f"d ON f.dest_id = d.id WHERE o.country = '{c}' AND d.country = '{c}'", False)

    return Database("flights", "Air travel: airports, airlines, flights, passengers and bookings.",
                    (t_air, t_line, t_fl, t_pax, t_book),
                    {"airports": airports, "airlines": airlines, "flights": fl,
                     "passengers": pax, "bookings": bookings},
                    (route_count, avg_delay_airline, domestic))


# --- sports -----------------------------------------------------------------------------------

_MASCOTS = ("Lions", "Hawks", "Wolves", "Bears", "Sharks", "Falcons", "Tigers", "Rangers",
            "Comets", "Pirates", "Stallions", "Owls", "Foxes", "Titans")


def sports(rng: random.Random) -> Database:
    t_team = Table("teams", "team", "teams", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("city", "TEXT", CAT, "city"), Col("founded_year", "INTEGER", NUM, "founding year"),
        Col("coach", "TEXT", TEXT, "head coach", nullable=True)))
    t_pl = Table("players", "player", "players", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("team_id", "INTEGER", FK, ref="teams", phrase="players of {p}", rel="players"),
        Col("position", "TEXT", CAT, "position"), Col("birth_date", "TEXT", DATE, "birth date"),
        Col("salary", "INTEGER", NUM, "salary"), Col("jersey_number", "INTEGER", NUM, "jersey number")))
    t_m = Table("matches", "match", "matches", (
        Col("id", "INTEGER", PK),
        Col("home_team_id", "INTEGER", FK, ref="teams",
            phrase="home matches of {p}", rel="home matches"),
        Col("away_team_id", "INTEGER", FK, ref="teams",
            phrase="away matches of {p}", rel="away matches"),
        Col("match_date", "TEXT", DATE, "match date"), Col("season", "TEXT", CAT, "season"),
        Col("home_score", "INTEGER", NUM, "home score"), Col("away_score", "INTEGER", NUM, "away score"),
        Col("attendance", "INTEGER", NUM, "attendance", nullable=True)))
    t_inj = Table("injuries", "injury", "injuries", (
        Col("id", "INTEGER", PK),
        Col("player_id", "INTEGER", FK, ref="players", phrase="injuries of {p}", rel="injuries"),
        Col("injury_date", "TEXT", DATE, "injury date"), Col("kind", "TEXT", CAT, "injury type"),
        Col("games_missed", "INTEGER", NUM, "games missed")))

    team_names = unique_names(rng, 16, make=lambda r: f"{r.choice(CITIES)} {r.choice(_MASCOTS)}")
    teams = [(i + 1, n, n.split()[0], rng.randint(1890, 2005), maybe(rng, 0.2, person_name(rng)))
             for i, n in enumerate(team_names)]
    players, jerseys = [], set()
    for i, n in enumerate(unique_names(rng, 400)):
        tid = rng.randint(1, len(teams))
        j = rng.randint(1, 99)
        while (tid, j) in jerseys:  # a number is worn by one player per team
            j = rng.randint(1, 99)
        jerseys.add((tid, j))
        players.append((i + 1, n, tid, rng.choice(["goalkeeper", "defender", "midfielder", "forward"]),
                        iso(rand_date(rng, D(1985, 1, 1), D(2005, 12, 31))),
                        rng.randrange(60_000, 6_000_000, 5_000), j))
    matches = []
    for season, year in (("2021-22", 2021), ("2022-23", 2022), ("2023-24", 2023)):
        for h in teams:
            for a in teams:
                if h[0] != a[0] and rng.random() < 0.55:
                    matches.append((len(matches) + 1, h[0], a[0],
                                    iso(rand_date(rng, D(year, 8, 15), D(year + 1, 5, 31))), season,
                                    rng.choices(range(7), [20, 28, 24, 14, 8, 4, 2])[0],
                                    rng.choices(range(7), [26, 30, 22, 12, 6, 3, 1])[0],
                                    maybe(rng, 0.08, rng.randint(4_000, 65_000))))
    injuries = [(i + 1, rng.choice(players)[0], iso(rand_date(rng, D(2021, 8, 1), D(2024, 5, 31))),
                 rng.choice(["hamstring", "ankle sprain", "knee ligament", "concussion", "fracture",
                             "groin strain"]), rng.randint(0, 30)) for i in range(350)]

    def home_wins(conn: sqlite3.Connection, r: random.Random):
        team = r.choice(teams)[1]
        season = r.choice(["2021-22", "2022-23", "2023-24"])
        return ("sports/home_wins", "medium",
                f"How many home matches did the {team} win in the {season} season?",
                "SELECT COUNT(*) FROM matches m JOIN teams t ON m.home_team_id = t.id "
                f"WHERE t.name = '{team}' AND m.season = '{season}' AND m.home_score > m.away_score",
                False)

    def total_goals(conn: sqlite3.Connection, r: random.Random):
        team = r.choice(teams)[1]
        return ("sports/goals_scored", "hard",
                f"How many goals did the {team} score in total, counting both home and away matches?",
                "SELECT (SELECT COALESCE(SUM(home_score), 0) FROM matches m JOIN teams t ON "
                f"m.home_team_id = t.id WHERE t.name = '{team}') + (SELECT COALESCE(SUM(away_score), 0) "
                f"FROM matches m JOIN teams t ON m.away_team_id = t.id WHERE t.name = '{team}')", False)

    return Database("sports", "A football league: teams, players, matches and injuries.",
                    (t_team, t_pl, t_m, t_inj),
                    {"teams": teams, "players": players, "matches": matches, "injuries": injuries},
                    (home_wins, total_goals))


# --- hr (held out) ----------------------------------------------------------------------------

_DEPTS = ("Engineering", "Sales", "Marketing", "Finance", "Human Resources", "Legal",
          "Operations", "Customer Support", "Research", "Design")
_TITLES = ("Analyst", "Engineer", "Senior Engineer", "Manager", "Specialist", "Coordinator",
           "Director", "Associate", "Consultant")


def hr(rng: random.Random) -> Database:
    t_dept = Table("departments", "department", "departments", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("location", "TEXT", CAT, "location"), Col("budget", "INTEGER", NUM, "budget")))
    t_emp = Table("employees", "employee", "employees", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("department_id", "INTEGER", FK, ref="departments",
            phrase="employees of {p}", rel="employees"),
        Col("manager_id", "INTEGER", FK, ref="employees", nullable=True,
            phrase="direct reports of {p}", rel="direct reports"),
        Col("job_title", "TEXT", CAT, "job title"), Col("hire_date", "TEXT", DATE, "hire date"),
        Col("salary", "INTEGER", NUM, "salary"), Col("email", "TEXT")))
    t_proj = Table("projects", "project", "projects", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("department_id", "INTEGER", FK, ref="departments",
            phrase="projects run by {p}", rel="projects"),
        Col("start_date", "TEXT", DATE, "start date"),
        Col("end_date", "TEXT", DATE, "end date", nullable=True),
        Col("budget", "INTEGER", NUM, "budget"), Col("status", "TEXT", CAT, "status")))
    t_asg = Table("assignments", "assignment", "assignments", (
        Col("id", "INTEGER", PK),
        Col("employee_id", "INTEGER", FK, ref="employees",
            phrase="project assignments of {p}", rel="project assignments"),
        Col("project_id", "INTEGER", FK, ref="projects",
            phrase="assignments to {p}", rel="assignments"),
        Col("role", "TEXT", CAT, "role"), Col("hours", "INTEGER", NUM, "hours worked")))

    depts = [(i + 1, n, rng.choice(CITIES), rng.randrange(200_000, 5_000_000, 10_000))
             for i, n in enumerate(_DEPTS)]
    emps: list[tuple] = []
    heads: dict[int, int] = {}
    for i, n in enumerate(unique_names(rng, 650)):
        eid = i + 1
        d = rng.choice(depts)[0]
        # The first hire of each department heads it; everyone else reports to someone there.
        mgr = None if d not in heads else rng.choice([heads[d]] + [e[0] for e in emps if e[2] == d][:6])
        heads.setdefault(d, eid)
        job = "Director" if mgr is None else rng.choice(_TITLES)
        emps.append((eid, n, d, mgr, job, iso(rand_date(rng, D(2005, 1, 1), D(2024, 10, 31))),
                     rng.randrange(42_000, 260_000, 500), email(n, eid, "corp.example")))
    projects = []
    tags = ("Alpha", "Beta", "Gamma", "Delta", "Omega", "Prime", "One", "X")
    project_names = unique_names(rng, 120, make=lambda r: f"Project {r.choice(NOUNS)} {r.choice(tags)}")
    for i, n in enumerate(project_names):
        start = rand_date(rng, D(2018, 1, 1), D(2024, 9, 30))
        status = rng.choice(["active", "completed", "completed", "on hold", "cancelled"])
        end = None if status in {"active", "on hold"} else start + dt.timedelta(rng.randint(30, 900))
        projects.append((i + 1, n, rng.choice(depts)[0], iso(start), iso(end),
                         rng.randrange(20_000, 2_000_000, 5_000), status))
    asg, seen = [], set()
    for _ in range(1500):
        e, p = rng.choice(emps)[0], rng.choice(projects)[0]
        if (e, p) in seen:
            continue
        seen.add((e, p))
        asg.append((len(asg) + 1, e, p, rng.choice(["lead", "developer", "reviewer", "advisor", "tester"]),
                    rng.randint(5, 800)))

    def payroll(conn: sqlite3.Connection, r: random.Random):
        return ("hr/payroll_vs_budget", "hard",
                "Which departments have a total employee salary greater than their budget? Give "
                "the department names.",
                "SELECT d.name FROM departments d JOIN employees e ON e.department_id = d.id "
                "GROUP BY d.id HAVING SUM(e.salary) > d.budget", False)

    def earns_more_than_manager(conn: sqlite3.Connection, r: random.Random):
        return ("hr/earns_more_than_manager", "hard",
                "How many employees earn more than their manager?",
                "SELECT COUNT(*) FROM employees e JOIN employees m ON e.manager_id = m.id "
                "WHERE e.salary > m.salary", False)

    return Database("hr", "A company's HR records: departments, employees, projects, assignments.",
                    (t_dept, t_emp, t_proj, t_asg),
                    {"departments": depts, "employees": emps, "projects": projects, "assignments": asg},
                    (payroll, earns_more_than_manager))


# --- music (held out) -------------------------------------------------------------------------

_LABELS = ("Blue Note", "Sub Pop", "Warp", "Matador", "Rough Trade", "XL")
_TRACK_WORDS = ("Song", "Blues", "Dance", "Dreams", "Lights", "Road", "Heart", "Night")
_PLAYLIST_WORDS = ("Mix", "Vibes", "Favorites", "Workout", "Chill", "Party", "Focus")


def _username(r: random.Random) -> str:
    return f"{r.choice(NOUNS).lower()}_{r.choice(ADJECTIVES).lower()}{r.randint(1, 999)}"


_MUSIC_GENRES = ("rock", "pop", "jazz", "hip hop", "electronic", "folk", "classical", "metal",
                 "blues", "reggae")


def music(rng: random.Random) -> Database:
    t_art = Table("artists", "artist", "artists", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("country", "TEXT", CAT, "country"), Col("formed_year", "INTEGER", NUM, "formation year")))
    t_alb = Table("albums", "album", "albums", (
        Col("id", "INTEGER", PK), Col("title", "TEXT", LABEL, "title"),
        Col("artist_id", "INTEGER", FK, ref="artists", phrase="albums by {p}", rel="albums"),
        Col("release_date", "TEXT", DATE, "release date"), Col("genre", "TEXT", CAT, "genre"),
        Col("record_label", "TEXT", CAT, "record label", nullable=True)))
    t_tr = Table("tracks", "track", "tracks", (
        Col("id", "INTEGER", PK), Col("title", "TEXT", LABEL, "title"),
        Col("album_id", "INTEGER", FK, ref="albums", phrase="tracks on {p}", rel="tracks"),
        Col("duration_sec", "INTEGER", NUM, "duration in seconds"),
        Col("play_count", "INTEGER", NUM, "play count"), Col("explicit", "INTEGER")))
    t_user = Table("users", "user", "users", (
        Col("id", "INTEGER", PK), Col("username", "TEXT", LABEL, "username"),
        Col("country", "TEXT", CAT, "country"), Col("signup_date", "TEXT", DATE, "signup date"),
        Col("plan", "TEXT", CAT, "subscription plan")))
    t_pl = Table("playlists", "playlist", "playlists", (
        Col("id", "INTEGER", PK), Col("name", "TEXT", LABEL, "name"),
        Col("user_id", "INTEGER", FK, ref="users", phrase="playlists created by {p}", rel="playlists"),
        Col("created_date", "TEXT", DATE, "creation date")))
    t_pt = Table("playlist_tracks", "playlist entry", "playlist entries", (
        Col("id", "INTEGER", PK),
        Col("playlist_id", "INTEGER", FK, ref="playlists", phrase="entries of {p}", rel="entries"),
        Col("track_id", "INTEGER", FK, ref="tracks",
            phrase="playlist entries of {p}", rel="playlist entries"),
        Col("added_date", "TEXT", DATE, "date added")))

    band = lambda r: (f"The {r.choice(ADJECTIVES)} {r.choice(NOUNS)}s" if r.random() < 0.6
                      else person_name(r))
    artists = [(i + 1, n, rng.choice(COUNTRIES), rng.randint(1960, 2020))
               for i, n in enumerate(unique_names(rng, 150, make=band))]
    albums = []
    for i, t in enumerate(unique_names(rng, 420, make=lambda r: f"{r.choice(ADJECTIVES)} {r.choice(NOUNS)}")):
        a = rng.choice(artists)
        albums.append((i + 1, t, a[0], iso(rand_date(rng, D(max(a[3], 1965), 1, 1), D(2024, 12, 31))),
                       rng.choice(_MUSIC_GENRES),
                       maybe(rng, 0.2, rng.choice(_LABELS))))
    tracks = []
    for alb in albums:
        for _ in range(rng.randint(6, 12)):
            tracks.append((len(tracks) + 1, f"{rng.choice(NOUNS)} {rng.choice(_TRACK_WORDS)}",
                           alb[0], rng.randint(95, 540), int(rng.paretovariate(1.2) * 1000),
                           int(rng.random() < 0.15)))
    users = [(i + 1, u, rng.choice(COUNTRIES), iso(rand_date(rng, D(2015, 1, 1), D(2024, 10, 31))),
              rng.choices(["free", "premium", "family", "student"], [50, 30, 12, 8])[0])
             for i, u in enumerate(unique_names(rng, 700, make=_username))]
    playlists = []
    for i in range(500):
        u = rng.choice(users)
        playlists.append((i + 1, f"{rng.choice(ADJECTIVES)} {rng.choice(_PLAYLIST_WORDS)}",
                          u[0], iso(rand_date(rng, D.fromisoformat(u[3]), D(2024, 12, 31)))))
    entries = []
    for p in playlists:
        for t in rng.sample(tracks, rng.randint(3, 15)):
            entries.append((len(entries) + 1, p[0], t[0],
                            iso(rand_date(rng, D.fromisoformat(p[3]), D(2025, 1, 31)))))

    def long_albums(conn: sqlite3.Connection, r: random.Random):
        minutes = r.randint(50, 75)
        return ("music/long_albums", "hard",
                f"Which albums have a total running time of more than {minutes} minutes? Give the "
                "album titles.",
                "SELECT a.title FROM albums a JOIN tracks t ON t.album_id = a.id GROUP BY a.id "
                f"HAVING SUM(t.duration_sec) > {minutes * 60}", False)

    def plan_playlists(conn: sqlite3.Connection, r: random.Random):
        plan = r.choice(["free", "premium", "family", "student"])
        return ("music/playlists_by_plan", "medium",
                f"How many playlists were created by users on the {plan} plan?",
                "SELECT COUNT(*) FROM playlists p JOIN users u ON p.user_id = u.id "
                f"WHERE u.plan = '{plan}'", False)

    return Database("music", "A music streaming service: artists, albums, tracks, users, playlists.",
                    (t_art, t_alb, t_tr, t_user, t_pl, t_pt),
                    {"artists": artists, "albums": albums, "tracks": tracks, "users": users,
                     "playlists": playlists, "playlist_tracks": entries},
                    (long_albums, plan_playlists))


DATABASES: dict[str, Callable[[random.Random], Database]] = {
    "store": store, "school": school, "hospital": hospital, "library": library,
    "flights": flights, "sports": sports, "hr": hr, "music": music,
}
# Whole databases are held out: held-out questions run on schemas never seen in training.
HELDOUT_DBS = ("hr", "music")


def write_sqlite(db: Database, path: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        for t in db.tables:
            conn.execute(t.create_sql())
        for t in db.tables:
            marks = ",".join("?" * len(t.cols))
            conn.executemany(f"INSERT INTO {t.name} VALUES ({marks})", db.rows[t.name])
        conn.commit()
        bad = conn.execute("PRAGMA foreign_key_check").fetchall()
        if bad:
            raise RuntimeError(f"database {db.db_id} violates its foreign keys: {bad[:5]}")
    finally:
        conn.close()
