"""AN4-like English sentences drawn from a small grammar.

CMU AN4 is census-style speech: digit strings, numbers, dates, spelled words and names, and a handful of
one-word commands. Every sentence here is lower case, without punctuation, words separated by single spaces,
and is drawn from a ``random.Random`` so that a seed fixes the whole list.
"""
import random

DIGITS = "zero one two three four five six seven eight nine".split()
TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINAL_UNITS = "_ first second third fourth fifth sixth seventh eighth ninth".split()
ORDINAL_TEENS = ("tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
                 "nineteenth").split()
ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}
MONTHS = "january february march april may june july august september october november december".split()
DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
COMMANDS = "yes no go stop start help repeat rubout erase enter cancel quit next back".split()
# Commands that take an argument in AN4 ("enter six two seven", "erase c q q f seven").
ARGUMENT_COMMANDS = ["enter", "erase", "rubout", "repeat"]

CITIES = ("pittsburgh boston chicago denver austin seattle dallas houston phoenix portland atlanta miami detroit "
          "memphis tucson omaha toledo buffalo albany reno tampa erie akron dayton newark raleigh fresno boise "
          "spokane madison lincoln topeka").split()
NAMES = ("john mary carl hicks smith jones brown garcia miller davis wilson moore taylor thomas white harris "
         "martin clark lewis walker hall allen young king wright scott green baker adams nelson hill campbell "
         "mitchell carter evans turner parker collins stewart morris murphy cook rogers morgan cooper reed "
         "bailey kelly howard ward cox rivera wood brooks gray james bennett price ross long foster sanders "
         "perry butler barnes fisher henderson coleman jenkins powell sullivan russell ortiz patterson hughes "
         "flores myers ford hamilton graham wallace woods cole west jordan owens reynolds ellis harrison gibson "
         "mcdonald cruz marshall gomez murray freeman wells webb simpson stevens tucker porter hunter "
         "crawford boyd mason kennedy warren dixon burns gordon shaw holmes rice robertson hunt black daniels "
         "palmer mills grant knight ferguson stone hawkins dunn perkins hudson spencer gardner stephens payne "
         "pierce berry matthews arnold wagner willis ray watkins olson carroll duncan snyder hart cunningham "
         "bradley lane andrews ruiz harper fox riley armstrong carpenter weaver greene lawrence elliott chavez "
         "sims austin peters kelley franklin lawson fields ryan").split()


def number_words(n: int) -> str:
    """Cardinal 0..9999 in US style without "and": 405 -> "four hundred five"."""
    if not 0 <= n <= 9999:
        raise ValueError(f"number_words covers 0..9999, got {n}")
    if n < 10:
        return DIGITS[n]
    if n < 20:
        return TEENS[n - 10]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + DIGITS[n % 10])
    if n < 1000:
        rest = n % 100
        return DIGITS[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def ordinal_words(n: int) -> str:
    """Ordinal 1..31, the days of a month: 21 -> "twenty first"."""
    if not 1 <= n <= 31:
        raise ValueError(f"ordinal_words covers 1..31, got {n}")
    if n < 10:
        return ORDINAL_UNITS[n]
    if n < 20:
        return ORDINAL_TEENS[n - 10]
    if n % 10 == 0:
        return ORDINAL_TENS[n]
    return TENS[n // 10] + " " + ORDINAL_UNITS[n % 10]


def year_words(year: int) -> str:
    """Years as people say them: 1990 "nineteen ninety", 1905 "nineteen oh five", 2004 "two thousand four"."""
    century, rest = divmod(year, 100)
    if year % 1000 < 10 and year >= 2000:
        return number_words(year)
    if rest == 0:
        return number_words(century) + " hundred"
    if rest < 10:
        return number_words(century) + " oh " + DIGITS[rest]
    return number_words(century) + " " + number_words(rest)


def digit_string(rng: random.Random, length: int) -> str:
    """Digits read one by one; zero is read "zero" or "oh" as people do."""
    words = []
    for _ in range(length):
        d = rng.randrange(10)
        words.append(rng.choice(["zero", "oh"]) if d == 0 else DIGITS[d])
    return " ".join(words)


def spelled(word: str) -> str:
    return " ".join(word)


def random_letters(rng: random.Random) -> str:
    return " ".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 5)))


def sentence_digits(rng):
    return digit_string(rng, rng.randint(2, 8))


def sentence_number(rng):
    # Log-uniform magnitude so that "seven", "forty two" and "three thousand ten" are all common.
    magnitude = rng.choice([10, 100, 1000, 10000])
    return number_words(rng.randrange(magnitude))


def sentence_number_pairs(rng):
    # AN4 style "eleven twenty seven fifty seven".
    return " ".join(number_words(rng.randint(10, 99)) for _ in range(rng.randint(2, 3)))


def sentence_date(rng):
    month = rng.randrange(12)
    day = ordinal_words(rng.randint(1, DAYS_IN_MONTH[month]))
    year = year_words(rng.randint(1900, 2030))
    form = rng.randrange(3)
    if form == 0:
        return f"{MONTHS[month]} {day}"
    if form == 1:
        return f"{MONTHS[month]} {day} {year}"
    return f"the {day} of {MONTHS[month]} {year}"


def sentence_spelled_city(rng):
    return spelled(rng.choice(CITIES))


def sentence_spelled_name(rng):
    if rng.random() < 0.3:
        return spelled(rng.choice(NAMES)) + " " + spelled(rng.choice(NAMES))
    return spelled(rng.choice(NAMES))


def sentence_command(rng):
    return rng.choice(COMMANDS)


def sentence_command_with_argument(rng):
    argument = rng.choice([lambda: digit_string(rng, rng.randint(1, 4)), lambda: random_letters(rng),
                           lambda: random_letters(rng) + " " + digit_string(rng, rng.randint(1, 2))])
    return rng.choice(ARGUMENT_COMMANDS) + " " + argument()


def sentence_zip_code(rng):
    return ("zip code " if rng.random() < 0.5 else "") + digit_string(rng, 5)


def sentence_phone_number(rng):
    number = digit_string(rng, 3) + " " + digit_string(rng, 4)
    if rng.random() < 0.5:
        return "area code " + digit_string(rng, 3) + " " + number
    return number


# (weight, generator): roughly the mix of AN4's census and command sentences.
SENTENCE_KINDS = [
    (18, sentence_digits),
    (12, sentence_number),
    (6, sentence_number_pairs),
    (14, sentence_date),
    (9, sentence_spelled_city),
    (11, sentence_spelled_name),
    (8, sentence_command),
    (10, sentence_command_with_argument),
    (5, sentence_zip_code),
    (7, sentence_phone_number),
]


def random_sentence(rng: random.Random) -> str:
    weights = [weight for weight, _ in SENTENCE_KINDS]
    generator = rng.choices([gen for _, gen in SENTENCE_KINDS], weights=weights)[0]
    return generator(rng)


def vocabulary() -> set:
    """Every word the grammar can produce (to document the corpus and check sentences against)."""
    words = set(DIGITS + TEENS + TENS[2:] + ORDINAL_UNITS[1:] + ORDINAL_TEENS + list(ORDINAL_TENS.values()))
    words |= set(MONTHS + LETTERS + COMMANDS) | {"oh", "hundred", "thousand", "the", "of", "zip", "area", "code"}
    return words
