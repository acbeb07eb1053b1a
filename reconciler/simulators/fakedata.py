"""Distinctive fake personal data, with a record of every value handed out (for leak scans)."""

from __future__ import annotations

import datetime as dt
import random
import secrets
import threading
from dataclasses import dataclass

SYLLABLES = (
    "kal",
    "ver",
    "dor",
    "min",
    "sar",
    "tun",
    "bel",
    "riv",
    "lom",
    "ven",
    "gra",
    "thu",
    "mor",
    "zan",
    "urk",
    "pel",
    "nes",
    "kor",
    "fal",
    "ish",
    "brem",
    "yol",
    "quen",
    "ost",
)
GIVEN_ENDINGS = ("a", "o", "is", "as", "en", "ina", "ora", "ius")
SURNAME_ENDINGS = ("sen", "ova", "ić", "ski", "ez", "aitė", "berg", "ani", "ström", "escu")
COUNTRIES = ("LT", "DE", "FR", "PL", "ES", "SE", "NL", "IT")
CITIES = ("Vilnius", "Kaunas", "Leipzig", "Lyon", "Gdańsk", "Sevilla", "Malmö", "Utrecht")


@dataclass(frozen=True)
class Person:
    """One fake identity, as found on a fake document."""

    given_name: str
    surname: str
    sex: str  # "M" | "F"
    date_of_birth: str  # YYYY-MM-DD
    nationality: str  # alpha-2
    personal_code: str
    document_number: str
    document_type: str  # "passport" | "national_id" | "drivers_license"
    issue_date: str
    expiry_date: str
    birth_place: str
    address: str

    @property
    def full_name(self) -> str:
        """Given name and surname."""
        return f"{self.given_name} {self.surname}"

    @property
    def age(self) -> int:
        """Age in whole years today."""
        born = dt.date.fromisoformat(self.date_of_birth)
        today = dt.date.today()
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class PiiRecorder:
    """Generates fake PII and remembers every string it produced, in order, without duplicates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: list[str] = []
        self._seen: set[str] = set()
        self._rng = random.SystemRandom()

    def record(self, *values: str | None) -> None:
        """Remember values (None and empty strings are ignored)."""
        with self._lock:
            for value in values:
                if value and value not in self._seen:
                    self._seen.add(value)
                    self._values.append(value)

    def values(self) -> list[str]:
        """Every recorded value, oldest first."""
        with self._lock:
            return list(self._values)

    def clear(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self._values.clear()
            self._seen.clear()

    def _word(self, syllables: int, endings: tuple[str, ...]) -> str:
        """A pronounceable, unusual name part that was not handed out before."""
        word = ""
        for _ in range(50):
            word = "".join(
                self._rng.choice(SYLLABLES) for _ in range(syllables)
            ) + self._rng.choice(endings)
            word = word.capitalize()
            with self._lock:
                if word not in self._seen and word.upper() not in self._seen:
                    return word
        return word + self.digits(3)

    def digits(self, count: int) -> str:
        """count random decimal digits (not recorded)."""
        return "".join(self._rng.choice("0123456789") for _ in range(count))

    def _date(self, first: dt.date, last: dt.date) -> str:
        """A random ISO date between first and last."""
        return (first + dt.timedelta(days=self._rng.randint(0, (last - first).days))).isoformat()

    def person(self) -> Person:
        """A new fake identity; its names, date of birth and numbers are recorded."""
        today = dt.date.today()
        sex = self._rng.choice("MF")
        dob = self._date(dt.date(1950, 1, 1), dt.date(2004, 12, 31))
        issued = self._date(today - dt.timedelta(days=3000), today - dt.timedelta(days=30))
        document_type = self._rng.choice(("passport", "national_id", "drivers_license"))
        prefix = {"passport": "P", "national_id": "ID", "drivers_license": "DL"}[document_type]
        person = Person(
            given_name=self._word(2, GIVEN_ENDINGS),
            surname=self._word(3, SURNAME_ENDINGS),
            sex=sex,
            date_of_birth=dob,
            nationality=self._rng.choice(COUNTRIES),
            personal_code=("3" if sex == "M" else "4")
            + dob[2:4]
            + dob[5:7]
            + dob[8:10]
            + self.digits(4),
            document_number=prefix + self.digits(8),
            document_type=document_type,
            issue_date=issued,
            expiry_date=(dt.date.fromisoformat(issued) + dt.timedelta(days=3650)).isoformat(),
            birth_place=self._rng.choice(CITIES),
            address=f"{self._rng.randint(1, 199)} {self._word(2, ('o g.', 'straße', ' Street'))}, "
            f"{self._rng.choice(CITIES)}",
        )
        self.record(
            person.given_name,
            person.surname,
            person.full_name,
            person.given_name.upper(),
            person.surname.upper(),
            person.full_name.upper(),
            person.date_of_birth,
            person.personal_code,
            person.document_number,
            person.address,
            person.birth_place,
            person.issue_date,
            person.expiry_date,
        )
        return person

    def file_url(self, host: str, path: str) -> str:
        """A fake presigned storage URL (never resolvable: .invalid); recorded."""
        url = (
            f"https://{host}/{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600"
            f"&X-Amz-Signature={secrets.token_hex(32)}"
        )
        self.record(url)
        return url

    def client_ip(self) -> str:
        """A documentation-range (TEST-NET-3) client IP; recorded."""
        address = f"203.0.113.{self._rng.randint(1, 254)}"
        self.record(address)
        return address
