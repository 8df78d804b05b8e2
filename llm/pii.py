"""PII masking and content policy for AI routes (issue 11, item 9).

A route's ``PiiPolicy`` says what happens to personal data and secrets in a request before
it goes upstream:

- ``redact``: each finding becomes ``[REDACTED_EMAIL]`` (etc.); nothing comes back.
- ``mask`` (mask-and-restore): each distinct value becomes a placeholder unique within the
  request (``<PII_EMAIL_1>``); the provider sees placeholders, the client sees its originals
  again in the answer (whole answers, tool-call arguments and streamed deltas).
- ``block``: a request with any finding is refused (400 in the client's format), naming the
  detectors that fired, never the values.
- ``off``: nothing is scanned.

The deny list applies whatever the mode (also with ``off``): entries are words or phrases
(whole-word, case-insensitive) or ``/regex/`` (``/regex/i`` for case-insensitive). A match
refuses the request with a message naming the rule, never the user's text.

Detection is one regex pass per text: every detector is an alternative of one precompiled
pattern, and a candidate is then checked by its validator (Luhn for cards, mod-97 for IBANs,
``ipaddress`` for IPs, a header that decodes for JWTs, entropy for bare tokens). The
patterns are written so the regex engine never backtracks more than a bounded amount per
start position: every start is guarded by a look-behind (no start inside a word or number),
repeats are bounded or possessive, and repeated units are separated by characters outside
their own class. The whole scan is therefore linear in the text.

Deny regexes are written by route owners (tenants), so they are not trusted either: they are
compiled once per policy and must pass a structural check (no back-references, no nested or
unbounded repeats, at most 1000 characters per match); the check also yields a bound on the
work per start position (the product of the repeats' ranges), and a text longer than
``_REGEX_WORK_BUDGET / bound`` characters is refused rather than scanned partially (a content
policy fails closed). An entry that fails the check refuses every request with reason
``policy`` (``policy_errors`` lets the admin side reject it when it is saved).

Nothing here imports Django: the gateway's hot path uses it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llm.canonical import Json, PiiPolicy

DETECTORS = ("email", "phone", "card", "iban", "ip", "secret")
MODES = ("off", "redact", "mask", "block")
_LABELS = {kind: kind.upper() for kind in DETECTORS}

Span = tuple[int, int]
Finding = tuple[int, int, str]  # start, end, detector
Validator = Callable[[str, "re.Match[str]"], Span | None]


# -- validators ------------------------------------------------------------------------------------


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits (card numbers)."""
    total = sum(map(int, digits[-1::-2])) + sum(_LUHN_DOUBLED[int(char)] for char in digits[-2::-2])
    return total % 10 == 0


# ISO 13616 registry: IBAN length per country. A country not listed is not an IBAN.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """ISO 7064 mod-97-10 over a compact, upper-case IBAN of its country's length."""
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _card_shape(groups: list[str]) -> bool:
    """Printed cards group their digits (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3); "1 2 3 4 ..." is
    not a card."""
    if len(groups) == 1:
        return True
    return len(groups[0]) == 4 and all(3 <= len(group) <= 6 for group in groups[1:-1]) and 1 <= len(groups[-1]) <= 6


@functools.lru_cache(maxsize=4096)
def _card_length(candidate: str) -> int | None:
    """How many characters of ``candidate`` are a card number, or None. Cached: a hostile
    text repeating one card-shaped string costs one check."""
    if len({char for char in candidate if char in " -"}) > 1:
        return None
    groups = re.split("[ -]", candidate)
    # The candidate may have taken the next number too ("4111 1111 1111 1111 12/26"): try
    # the longest run of whole groups that is a card.
    for count in range(len(groups), 0, -1):
        digits = "".join(groups[:count])
        if len(digits) < 13:
            return None
        if len(digits) <= 19 and len(set(digits)) > 1 and _card_shape(groups[:count]) and luhn_valid(digits):
            return sum(len(group) for group in groups[:count]) + count - 1
    return None


def _validate_card(text: str, match: re.Match[str]) -> Span | None:
    length = _card_length(match.group())
    return None if length is None else (match.start(), match.start() + length)


@functools.lru_cache(maxsize=4096)
def _iban_length(candidate: str) -> int | None:
    """How many characters of ``candidate`` are an IBAN (its country's length in
    alphanumerics, spaces between them included), or None. Cached like _card_length."""
    length = _IBAN_LENGTHS.get(candidate[:2].upper())
    if length is None:
        return None
    seen = 0
    for offset, char in enumerate(candidate):
        if char != " ":
            seen += 1
            if seen == length:
                end = offset + 1
                return end if iban_valid(candidate[:end].replace(" ", "").upper()) else None
    return None


def _validate_iban(text: str, match: re.Match[str]) -> Span | None:
    length = _iban_length(match.group())
    if length is None:
        return None
    end = match.start() + length
    if end < len(text) and text[end].isalnum():  # a longer token, not this IBAN
        return None
    return match.start(), end


def _validate_ipv4(text: str, match: re.Match[str]) -> Span | None:
    try:
        ipaddress.IPv4Address(match.group())
    except ValueError:
        return None
    return match.span()


def _validate_ipv6(text: str, match: re.Match[str]) -> Span | None:
    candidate = match.group()
    for value in (candidate, candidate.rstrip(".:")):
        # At least one decimal digit: "Bad::Face" or "add::cafe" are valid IPv6 but are words.
        if value and any(char.isdigit() for char in value):
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                continue
            return match.start(), match.start() + len(value)
    return None


def _digit_count(value: str) -> int:
    return sum(1 for char in value if char.isdigit())


def _validate_phone_international(text: str, match: re.Match[str]) -> Span | None:
    candidate = match.group()
    if not 8 <= _digit_count(candidate) <= 15 or candidate.count("(") != candidate.count(")"):
        return None  # E.164 numbers have at most 15 digits
    return match.span()


def _validate_phone_trunk(text: str, match: re.Match[str]) -> Span | None:
    candidate = match.group()
    separators = {char for char in candidate if char in " .-"}
    # "06 12 34 56 78" uses one separator; "01.02.2024 10" (a date and a time) mixes them.
    if not 10 <= _digit_count(candidate) <= 12 or len(separators) > 1 and "(" not in candidate:
        return None
    return match.span()


def _char_classes(value: str) -> int:
    return (
        any(char.islower() for char in value)
        + any(char.isupper() for char in value)
        + any(char.isdigit() for char in value)
    )


def _shannon_entropy(value: str) -> float:
    length = len(value)
    return -sum(count / length * math.log2(count / length) for count in Counter(value).values())


def _class_changes(value: str) -> float:
    """The share of adjacent characters of different kinds (lower, upper, digit, other).
    Random base62 tokens change kind at about 62 % of positions, camelCase names at 15-35 %."""

    def kind(char: str) -> int:
        return 0 if char.islower() else 1 if char.isupper() else 2 if char.isdigit() else 3

    kinds = [kind(char) for char in value]
    return sum(1 for a, b in zip(kinds, kinds[1:], strict=False) if a != b) / max(len(kinds) - 1, 1)


def _looks_random(value: str) -> bool:
    return _char_classes(value) == 3 and _class_changes(value) >= 0.4 and _shannon_entropy(value) >= 3.8


def _validate_generic_secret(text: str, match: re.Match[str]) -> Span | None:
    value = match.group().rstrip("=")
    # Longer than any key or token: a data blob (base64 image, ...), not a credential.
    if len(value) > 512 or not _looks_random(value):
        return None
    return match.span()


def _validate_bearer(text: str, match: re.Match[str]) -> Span | None:
    candidate = match.group()
    token_at = len(candidate) - len(candidate[6:].lstrip(" \t"))  # after "bearer" and blanks
    if _char_classes(candidate[token_at:]) < 2:  # "Bearer authentication-scheme" is prose
        return None
    return match.start() + token_at, match.end()


def _validate_jwt(text: str, match: re.Match[str]) -> Span | None:
    header = match.group().split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return match.span() if isinstance(decoded, dict) else None


# -- the detectors' patterns -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str  # the alternative's name in the combined pattern (unique)
    kind: str  # the detector it reports
    pattern: str  # no named groups; see _guarded
    validate: Validator | None = None


def _guarded(first: str, not_after: str, rest: str) -> str:
    """A pattern that starts with the character class ``first``, not right after a character
    of ``not_after``, then goes on with ``rest``. Written as ``first`` then a two-character
    look-behind (rather than look-behind then ``first``) because the regex engine skips an
    alternative of an alternation without entering it when its first character cannot
    match: most positions then cost one comparison per detector."""
    return rf"{first}(?<!{not_after}[\s\S]){rest}"


_T = r"[A-Za-z0-9_-]"  # a base64url / key character
_NOT_IN_KEY = r"[A-Za-z0-9_-]"
_RULES = (
    # Secrets first: a key may contain digit runs that look like other things.
    _Rule(
        "secret_pem",
        "secret",
        _guarded(
            "-",
            "-",
            r"----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY-----(?:[A-Za-z0-9+/=\s:,.]|-(?!----)){0,20000}+"
            r"-----END (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY-----",
        ),
    ),
    _Rule(
        "secret_jwt", "secret", _guarded("e", r"[A-Za-z0-9_.-]", rf"yJ{_T}{{4,}}+\.{_T}{{4,}}+\.{_T}*+"), _validate_jwt
    ),
    # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-)
    _Rule("secret_sk", "secret", _guarded("s", _NOT_IN_KEY, rf"k-{_T}{{20,}}+")),
    _Rule("secret_stripe", "secret", _guarded("[sr]", _NOT_IN_KEY, r"k_(?:live|test)_[A-Za-z0-9]{16,}+")),
    _Rule("secret_portico", "secret", _guarded("p", _NOT_IN_KEY, rf"t_[a-z0-9]{{8}}\.{_T}{{20,}}+")),
    # AWS access key ids (AKIA, ASIA); Google API keys (AIza)
    _Rule(
        "secret_aws_google",
        "secret",
        _guarded("A", _NOT_IN_KEY, rf"(?:[KS]IA[0-9A-Z]{{16}}(?![A-Za-z0-9])|Iza{_T}{{35}}(?!{_T}))"),
    ),
    _Rule("secret_github", "secret", _guarded("g", _NOT_IN_KEY, r"(?:h[pousr]_[A-Za-z0-9]{30,}+|ithub_pat_\w{22,}+)")),
    _Rule("secret_slack", "secret", _guarded("x", _NOT_IN_KEY, r"ox[abposr]-[A-Za-z0-9-]{10,}+")),
    _Rule(
        "secret_bearer",
        "secret",
        _guarded("[Bb]", r"[A-Za-z0-9_]", r"(?i:earer)[ \t]{1,8}+[A-Za-z0-9._~+/-]{16,}+=*+"),
        _validate_bearer,
    ),
    _Rule(
        "email",
        "email",
        _guarded(
            "[A-Za-z0-9_%+-]",
            "[A-Za-z0-9._%+-]",
            r"[A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])",
        ),
    ),
    _Rule(
        "secret_token",
        "secret",
        _guarded("[A-Za-z0-9+/_-]", "[A-Za-z0-9+/=_.-]", r"[A-Za-z0-9+/_-]{31,}+=*+"),
        _validate_generic_secret,
    ),
    _Rule(
        "iban",
        "iban",
        _guarded("[A-Za-z]", "[A-Za-z0-9]", r"[A-Za-z](?:0[2-9]|[1-8][0-9]|9[0-8])(?: ?[A-Za-z0-9]){11,31}+"),
        _validate_iban,
    ),
    _Rule(
        "card",
        "card",
        _guarded(
            "[0-9]",
            r"[\w.-]",
            r"(?:[0-9]{12,18}|[0-9]{3}[ -][0-9]{3,6}(?:[ -][0-9]{3,6}){0,2}(?:[ -][0-9]{1,6})?)(?!\w)",
        ),
        _validate_card,
    ),
    _Rule("ipv4", "ip", _guarded("[0-9]", r"[\w.]", r"[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\w|\.[0-9])"), _validate_ipv4),
    _Rule(
        "ipv6",
        "ip",
        # Two colons among the first groups ("::1", "fe80::1", "2001:db8:..."), then anything
        # an address is made of; ipaddress decides.
        _guarded(
            "[0-9A-Fa-f:]",
            r"[\w:.]",
            r"(?:(?<=:)(?=[0-9A-Fa-f]{0,4}:)|(?<=[0-9A-Fa-f])(?=[0-9A-Fa-f]{0,3}:[0-9A-Fa-f]{0,4}:))"
            r"[0-9A-Fa-f:.]{1,44}+(?![\w:.])",
        ),
        _validate_ipv6,
    ),
    # Phones: "+" and 8-15 digits (E.164); North American (415) 555-2671 / 415-555-2671; and
    # national numbers with a trunk 0 (020 7946 0958, 06 12 34 56 78). A bare digit run
    # without "+" is never a phone: it cannot be told from an id, an amount or a year.
    _Rule(
        "phone_international",
        "phone",
        _guarded(r"\+", r"[\w+]", r"[1-9](?:[ .-]?+(?:\([0-9]{1,4}+\)|[0-9]++)){1,8}+(?!\w)"),
        _validate_phone_international,
    ),
    _Rule(
        "phone_nanp",
        "phone",
        r"(?:"
        + _guarded("1", r"[\w+.-]", r"[ .-]?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])")
        + "|"
        + _guarded(r"\(", r"[\w+.-]", r"[2-9][0-9]{2}\) ?")
        + "|"
        + _guarded("[2-9]", r"[\w+.-]", r"[0-9]{2}[ .-]")
        + r")[2-9][0-9]{2}[ .-][0-9]{4}(?!\w|[.-][0-9])",
    ),
    _Rule(
        "phone_trunk",
        "phone",
        r"(?:"
        + _guarded(r"\(", r"[\w+.-]", r"0[0-9]{1,4}\) ?")
        + "|"
        + _guarded("0", r"[\w+.-]", r"[0-9]{1,4}[ .-]")
        + r")[0-9]{2,8}+(?:[ .-][0-9]{2,8}+){0,4}+(?!\w|[.-][0-9])",
        _validate_phone_trunk,
    ),
)


# Every detector's candidates start at a boundary (never right after a letter or digit) with a
# letter, a digit or one of "_%+(:-". Said once in front of the alternation, it lets the
# engine pass over the inside of words, numbers and spaces with one test per character.
_BOUNDARY = r"(?<![A-Za-z0-9])(?=[A-Za-z0-9_%+(:-])"


class _Scanner:
    """One combined pattern over the enabled detectors. When a candidate fails its
    validator, the detectors after it may still match at the same place (a 16-digit run
    failing Luhn may be something else): ``_after[i]`` is the alternation of the detectors
    after the i-th, matched there."""

    def __init__(self, rules: tuple[_Rule, ...]):
        self.rules = rules
        self.position = {rule.name: index for index, rule in enumerate(rules)}
        self.combined = self._alternation(rules)
        self._after = tuple(self._alternation(rules[index + 1 :]) for index in range(len(rules)))

    @staticmethod
    def _alternation(rules: tuple[_Rule, ...]) -> re.Pattern[str] | None:
        if not rules:
            return None
        # An empty named group at each alternative's end tells which one matched (lastgroup)
        # without putting a group in front of its first character (see _guarded).
        return re.compile(_BOUNDARY + "(?:" + "|".join(f"{rule.pattern}(?P<{rule.name}>)" for rule in rules) + ")")

    def findings(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        if self.combined is None:
            return found
        search = self.combined.search
        at = 0
        while (match := search(text, at)) is not None:
            start = match.start()
            finding = self._accept(text, match)
            if finding is None:
                at = start + 1
            else:
                found.append(finding)
                at = max(finding[1], start + 1)
        return found

    def _accept(self, text: str, match: re.Match[str]) -> Finding | None:
        candidate: re.Match[str] | None = match
        while candidate is not None:
            index = self.position[candidate.lastgroup or ""]
            rule = self.rules[index]
            span = candidate.span() if rule.validate is None else rule.validate(text, candidate)
            if span is not None:
                return span[0], span[1], rule.kind
            after = self._after[index]
            candidate = None if after is None else after.match(text, match.start())
        return None


@functools.lru_cache(maxsize=64)
def _scanner(detectors: frozenset[str]) -> _Scanner | None:
    rules = tuple(rule for rule in _RULES if rule.kind in detectors)
    return _Scanner(rules) if rules else None


def find_pii(text: str, detectors: frozenset[str] = frozenset(DETECTORS)) -> list[Finding]:
    """Every finding in ``text`` as (start, end, detector), left to right, not overlapping."""
    scanner = _scanner(frozenset(detectors))
    return [] if scanner is None else scanner.findings(text)


# -- the deny list -------------------------------------------------------------------------------------

_MAX_RULE_WIDTH = 1000  # characters one deny regex may match
_MAX_RULE_COST = 10_000  # paths per start position (product of the repeats' ranges)
_REGEX_WORK_BUDGET = 64_000_000  # text length x cost a rule may scan per text
_MAX_PATTERN_LENGTH = 500
_WORD = re.compile(r"\w+")
_SIMPLE_WORD = re.compile(r"\w+")

# The regex parser the ``re`` module itself uses: a private module, so it is reached by name
# (``sre_parse``, its public alias, warns on import since 3.11) and only through _rule_cost.
_sre_parser: Any = importlib.import_module("re._parser")


class _UnsafePattern(ValueError):
    pass


def _walk_cost(items: Any, inside_repeat: bool) -> int:
    cost = 1
    for op, arg in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = arg
            if high >= _MAX_RULE_WIDTH:
                raise _UnsafePattern("an unbounded or very large repeat (write {0,100} instead of * or +)")
            if inside_repeat and high > 1:
                raise _UnsafePattern("a repeat inside a repeat")
            if high > low:
                cost *= high - low + 1
            cost *= _walk_cost(body, inside_repeat=inside_repeat or high > 1)
        elif name in ("GROUPREF", "GROUPREF_EXISTS"):
            raise _UnsafePattern("a back-reference")
        elif name == "SUBPATTERN":
            cost *= _walk_cost(arg[3], inside_repeat)
        elif name in ("ASSERT", "ASSERT_NOT"):
            cost *= _walk_cost(arg[1], inside_repeat)
        elif name == "ATOMIC_GROUP":
            cost *= _walk_cost(arg, inside_repeat)
        elif name == "BRANCH":
            branches = arg[1]
            if inside_repeat:
                raise _UnsafePattern("an alternation inside a repeat")
            cost *= sum(_walk_cost(branch, inside_repeat) for branch in branches)
        if cost > _MAX_RULE_COST:
            raise _UnsafePattern("too many ways to match (bound the repeats more tightly)")
    return cost


def _rule_cost(pattern: str, flags: int) -> int:
    """The bound on paths per start position of a tenant's deny regex; raises _UnsafePattern
    or re.error when it cannot be used safely."""
    if len(pattern) > _MAX_PATTERN_LENGTH:
        raise _UnsafePattern(f"longer than {_MAX_PATTERN_LENGTH} characters")
    parsed = _sre_parser.parse(pattern, flags)
    if parsed.getwidth()[1] > _MAX_RULE_WIDTH:
        raise _UnsafePattern(f"can match more than {_MAX_RULE_WIDTH} characters")
    return _walk_cost(parsed, inside_repeat=False)


@dataclass(frozen=True, slots=True)
class _RegexRule:
    number: int
    pattern: re.Pattern[str]
    max_chars: int  # longer texts are refused, not scanned partially


@dataclass(frozen=True, slots=True)
class _DenyList:
    words: dict[str, int]  # case-folded single word -> rule number
    phrases: re.Pattern[str] | None  # multi-word or non-word entries, one alternation
    phrase_rules: dict[str, int]  # normalised phrase -> rule number
    regexes: tuple[_RegexRule, ...]
    labels: tuple[str, ...]  # how each rule is named in refusals


def _regex_entry(entry: str) -> tuple[str, int] | None:
    """``/pattern/`` or ``/pattern/i`` -> (pattern, flags); None for a word entry."""
    if len(entry) >= 3 and entry.startswith("/") and entry.endswith("/"):
        return entry[1:-1], 0
    if len(entry) >= 4 and entry.startswith("/") and entry.endswith("/i"):
        return entry[1:-2], re.IGNORECASE
    return None


def _normalise_phrase(text: str) -> str:
    return " ".join(text.casefold().split())


def policy_errors(policy: PiiPolicy) -> list[str]:
    """What is wrong with a policy, for the admin side to refuse it when it is saved."""
    errors = []
    if policy.mode not in MODES:
        errors.append(f"unknown mode {policy.mode!r} (one of {', '.join(MODES)})")
    unknown = sorted(set(policy.detectors) - set(DETECTORS))
    if unknown:
        errors.append(f"unknown detectors: {', '.join(unknown)}")
    for number, entry in enumerate(policy.deny, start=1):
        regex = _regex_entry(entry)
        if regex is None:
            if not entry.strip():
                errors.append(f"deny rule {number} is empty")
            continue
        try:
            _rule_cost(*regex)
        except (re.error, _UnsafePattern, RecursionError) as exc:
            errors.append(f"deny rule {number} ({entry}): {exc}")
    return errors


def _compile_deny(entries: tuple[str, ...]) -> _DenyList:
    words: dict[str, int] = {}
    phrase_rules: dict[str, int] = {}
    phrase_patterns: list[str] = []
    regexes: list[_RegexRule] = []
    labels: list[str] = []
    for number, entry in enumerate(entries, start=1):
        regex = _regex_entry(entry)
        labels.append(f'deny rule {number} ("{entry}")' if regex is None else f"deny rule {number} ({entry})")
        if regex is not None:
            pattern, flags = regex
            cost = _rule_cost(pattern, flags)  # raises on an unsafe entry
            compiled = re.compile(pattern, flags)
            regexes.append(_RegexRule(number, compiled, max(_REGEX_WORK_BUDGET // cost, 1)))
        elif _SIMPLE_WORD.fullmatch(entry.strip()):
            words.setdefault(entry.strip().casefold(), number)
        elif entry.strip():
            phrase = _normalise_phrase(entry)
            phrase_rules.setdefault(phrase, number)
            phrase_patterns.append(r"\s+".join(re.escape(part) for part in phrase.split(" ")))
    phrases = None
    if phrase_patterns:
        alternation = "|".join(sorted(phrase_patterns, key=len, reverse=True))
        phrases = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)
    return _DenyList(words, phrases, phrase_rules, tuple(regexes), tuple(labels))


def _deny_match(deny: _DenyList, text: str) -> str | None:
    """The label of the first rule ``text`` breaks, or None."""
    if deny.words:
        for match in _WORD.finditer(text):
            number = deny.words.get(match.group().casefold())
            if number is not None:
                return deny.labels[number - 1]
    if deny.phrases is not None:
        phrase = deny.phrases.search(text)
        if phrase is not None:
            number = deny.phrase_rules.get(_normalise_phrase(phrase.group()), 1)
            return deny.labels[number - 1]
    for rule in deny.regexes:
        if len(text) > rule.max_chars:
            return f"{deny.labels[rule.number - 1]}, which cannot check a text of {len(text)} characters"
        if rule.pattern.search(text) is not None:
            return deny.labels[rule.number - 1]
    return None


# -- compiled policies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CompiledPolicy:
    scanner: _Scanner | None
    deny: _DenyList | None
    error: str | None  # the policy cannot be applied: every request is refused


@functools.lru_cache(maxsize=256)
def _compile(policy: PiiPolicy) -> _CompiledPolicy:
    errors = policy_errors(policy)
    if errors:
        return _CompiledPolicy(None, None, "; ".join(errors))
    scanner = _scanner(frozenset(policy.detectors)) if policy.mode != "off" else None
    deny = _compile_deny(policy.deny) if policy.deny else None
    return _CompiledPolicy(scanner, deny, None)


# -- restoring placeholders ------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"<PII_(?:EMAIL|PHONE|CARD|IBAN|IP|SECRET)_[0-9]{1,6}>")
# What a placeholder can look like before its end has arrived (a stream may split it anywhere).
_PLACEHOLDER_PREFIX = re.compile(r"<(?:P(?:I(?:I(?:_(?:[A-Z]{1,6}(?:_[0-9]{0,6})?)?)?)?)?)?")
_MAX_PLACEHOLDER = len("<PII_SECRET_999999>")


def _restore(text: str, mapping: dict[str, str], json_escape: bool) -> str:
    if "<PII_" not in text:
        return text

    def original(match: re.Match[str]) -> str:
        value = mapping.get(match.group())
        if value is None:  # not one of ours (or invented by the model): left as written
            return match.group()
        return json.dumps(value, ensure_ascii=False)[1:-1] if json_escape else value

    return _PLACEHOLDER.sub(original, text)


class StreamRestorer:
    """Restores placeholders in one stream of text deltas (a choice's content, or one tool
    call's arguments with ``json_escape``). ``feed`` returns what can be emitted now: all of
    it except a tail that may still become a placeholder (at most 19 characters)."""

    def __init__(self, mapping: dict[str, str], *, json_escape: bool = False):
        self._mapping = mapping
        self._json_escape = json_escape
        self._held = ""

    def feed(self, delta: str) -> str:
        if not self._mapping:
            return delta
        text = self._held + delta
        hold_from = text.rfind("<")
        # A placeholder has one "<", so only the last one can start an unfinished one.
        if (
            hold_from >= 0
            and len(text) - hold_from < _MAX_PLACEHOLDER
            and _PLACEHOLDER_PREFIX.fullmatch(text, hold_from) is not None
        ):
            self._held = text[hold_from:]
            return _restore(text[:hold_from], self._mapping, self._json_escape)
        self._held = ""
        return _restore(text, self._mapping, self._json_escape)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held  # never completed: it was not a placeholder

    @property
    def holding(self) -> bool:
        return bool(self._held)


class ChunkRestorer:
    """Restores placeholders in a stream of canonical ``chat.completion.chunk`` objects:
    each choice's content and each tool call's arguments get their own StreamRestorer, and
    text held back is released in the chunk that carries the choice's ``finish_reason``."""

    def __init__(self, mapping: dict[str, str]):
        self._mapping = mapping
        self._content: dict[int, StreamRestorer] = {}
        self._arguments: dict[tuple[int, int], StreamRestorer] = {}
        self._envelope: Json = {}

    def feed(self, chunk: Json) -> Json:
        choices = chunk.get("choices")
        if not self._mapping or not isinstance(choices, list):
            return chunk
        self._envelope = {key: value for key, value in chunk.items() if key not in ("choices", "usage")}
        return {**chunk, "choices": [self._choice(choice) for choice in choices]}

    def flush(self) -> list[Json]:
        """Held text of choices that never finished (a cut stream), as chunks to emit first."""
        indexes = sorted({index for index in self._content} | {index for index, _ in self._arguments})
        choices = [choice for index in indexes if (choice := self._release({"index": index, "delta": {}}, index))]
        return [{**self._envelope, "choices": choices}] if choices else []

    def _choice(self, choice: Any) -> Any:
        if not isinstance(choice, dict):
            return choice
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        delta = choice.get("delta")
        if isinstance(delta, dict):
            delta = dict(delta)
            content = delta.get("content")
            if isinstance(content, str):
                delta["content"] = self._content.setdefault(index, StreamRestorer(self._mapping)).feed(content)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                delta["tool_calls"] = [self._tool_call(index, call) for call in calls]
            choice = {**choice, "delta": delta}
        if choice.get("finish_reason"):
            choice = self._release(choice, index) or choice
        return choice

    def _tool_call(self, choice_index: int, call: Any) -> Any:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
            return call
        call_index = call.get("index", 0)
        restorer = self._arguments.setdefault(
            (choice_index, call_index if isinstance(call_index, int) else 0),
            StreamRestorer(self._mapping, json_escape=True),
        )
        return {**call, "function": {**function, "arguments": restorer.feed(function["arguments"])}}

    def _release(self, choice: Json, index: int) -> Json | None:
        """``choice`` with the held text of choice ``index`` appended; None when none is held."""
        content = self._content.pop(index, None)
        held_content = content.flush() if content is not None else ""
        held_calls = [
            (call_index, restorer.flush())
            for (choice_index, call_index), restorer in list(self._arguments.items())
            if choice_index == index and restorer.holding
        ]
        for key in [key for key in self._arguments if key[0] == index]:
            del self._arguments[key]
        if not held_content and not held_calls:
            return None
        delta = dict(choice.get("delta") or {})
        if held_content:
            delta["content"] = (delta.get("content") or "") + held_content
        if held_calls:
            calls = list(delta.get("tool_calls") or [])
            calls.extend({"index": call_index, "function": {"arguments": text}} for call_index, text in held_calls)
            delta["tool_calls"] = calls
        return {**choice, "delta": delta}


# -- applying a policy to a canonical request --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PiiRefusal:
    """Why a request is refused: ``pii`` (block mode), ``deny`` (a deny rule) or ``policy``
    (the route's policy cannot be applied). ``message`` is safe to show the client: it
    names detectors and rules, never the request's text."""

    reason: str
    message: str
    detectors: tuple[str, ...] = ()
    rule: str | None = None


@dataclass(slots=True)
class PiiOutcome:
    request: Json  # the request to send upstream (a new dict; the client's is untouched)
    counts: dict[str, int] = field(default_factory=dict)  # findings per detector, for the call log
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original (mask mode)
    refusal: PiiRefusal | None = None

    def restore_text(self, text: str) -> str:
        return _restore(text, self.mapping, json_escape=False) if self.mapping else text

    def stream_restorer(self, *, json_escape: bool = False) -> StreamRestorer:
        """One per streamed text (a choice's content; ``json_escape`` for tool-call arguments)."""
        return StreamRestorer(self.mapping, json_escape=json_escape)

    def chunk_restorer(self) -> ChunkRestorer:
        """One per stream of canonical chunks (handles every choice and tool call)."""
        return ChunkRestorer(self.mapping)


class _Masker:
    """Rewrites texts by the policy's mode and counts findings per detector."""

    def __init__(self, scanner: _Scanner, mode: str, deny: _DenyList | None):
        self.scanner = scanner
        self.mode = mode
        self.deny = deny
        self.counts: Counter[str] = Counter()
        self.mapping: dict[str, str] = {}
        self._placeholders: dict[tuple[str, str], str] = {}
        self._numbers: Counter[str] = Counter()
        self.denied: str | None = None

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        existing = self._placeholders.get(key)
        if existing is not None:
            return existing
        self._numbers[kind] += 1
        placeholder = f"<PII_{_LABELS[kind]}_{self._numbers[kind]}>"
        self._placeholders[key] = placeholder
        self.mapping[placeholder] = value
        return placeholder

    def __call__(self, text: str) -> str:
        if self.deny is not None and self.denied is None:
            self.denied = _deny_match(self.deny, text)
        if self.denied is not None:
            return text  # refused anyway: no need to scan further
        findings = self.scanner.findings(text) if self.mode != "off" else []
        if not findings:
            return text
        pieces = []
        last = 0
        for start, end, kind in findings:
            self.counts[kind] += 1
            pieces.append(text[last:start])
            if self.mode == "redact":
                pieces.append(f"[REDACTED_{_LABELS[kind]}]")
            elif self.mode == "mask":
                pieces.append(self.placeholder(kind, text[start:end]))
            else:  # block: only counted
                pieces.append(text[start:end])
            last = end
        pieces.append(text[last:])
        return "".join(pieces)


TextMap = Callable[[str], str]


def _map_json(value: Any, rewrite: TextMap) -> Any:
    if isinstance(value, str):
        return rewrite(value)
    if isinstance(value, list):
        return [_map_json(item, rewrite) for item in value]
    if isinstance(value, dict):
        return {key: _map_json(item, rewrite) for key, item in value.items()}
    return value


def _map_arguments(arguments: str, rewrite: TextMap) -> str:
    """Tool-call arguments are a JSON text: rewrite its string values (so placeholders never
    break an escape sequence), or the raw text when it is not JSON (or nested too deep)."""
    try:
        data = json.loads(arguments)
        mapped = _map_json(data, rewrite)
    except (ValueError, RecursionError):
        return rewrite(arguments)
    if mapped == data:
        return arguments  # keep the client's formatting
    return json.dumps(mapped, ensure_ascii=False)


def _map_content(content: Any, rewrite: TextMap) -> Any:
    if isinstance(content, str):
        return rewrite(content)
    if not isinstance(content, list):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict):
            # Any part's "text" (text parts, also non-standard types) and "refusal".
            changes = {key: rewrite(part[key]) for key in ("text", "refusal") if isinstance(part.get(key), str)}
            part = {**part, **changes} if changes else part
        parts.append(part)
    return parts


def _map_call(call: Any, rewrite: TextMap) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    return {**call, "function": {**function, "arguments": _map_arguments(function["arguments"], rewrite)}}


def _map_message(message: Any, rewrite: TextMap) -> Any:
    if not isinstance(message, dict):
        return message
    mapped = dict(message)
    if "content" in mapped:
        mapped["content"] = _map_content(mapped["content"], rewrite)
    if isinstance(mapped.get("refusal"), str):
        mapped["refusal"] = rewrite(mapped["refusal"])
    if isinstance(mapped.get("tool_calls"), list):
        mapped["tool_calls"] = [_map_call(call, rewrite) for call in mapped["tool_calls"]]
    if isinstance(mapped.get("function_call"), dict):
        mapped["function_call"] = _map_call({"function": mapped["function_call"]}, rewrite)["function"]
    return mapped


def _map_request(request: Json, rewrite: TextMap) -> Json:
    """A new request with every text the client wrote passed through ``rewrite``: messages'
    content (strings, text parts), refusals, tool-call arguments, tool results (tool
    messages' content) and the system prompt (a system message); embeddings' ``input``."""
    mapped = dict(request)
    if isinstance(request.get("messages"), list):
        mapped["messages"] = [_map_message(message, rewrite) for message in request["messages"]]
    prompt_input = request.get("input")
    if isinstance(prompt_input, str):
        mapped["input"] = rewrite(prompt_input)
    elif isinstance(prompt_input, list):
        mapped["input"] = [rewrite(item) if isinstance(item, str) else item for item in prompt_input]
    return mapped


def apply_policy(policy: PiiPolicy, request: Json) -> PiiOutcome:
    """The request to send upstream under ``policy``, with counts per detector, the
    placeholder mapping (mask mode) or a refusal (block mode, deny list, broken policy)."""
    if policy.mode == "off" and not policy.deny:
        return PiiOutcome(request=dict(request))
    try:
        compiled = _compile(policy)
    except TypeError:  # a policy built with a list instead of a tuple cannot be cached
        compiled = _compile.__wrapped__(policy)
    if compiled.error is not None:
        return PiiOutcome(
            request=dict(request),
            refusal=PiiRefusal("policy", "The route's content policy is misconfigured; the request was not sent."),
        )
    scanner = compiled.scanner or _Scanner(())
    masker = _Masker(scanner, policy.mode if compiled.scanner is not None else "off", compiled.deny)
    masked = _map_request(request, masker)
    counts = dict(masker.counts)
    if masker.denied is not None:
        message = f"The request was refused by the route's content policy: it matches {masker.denied}."
        return PiiOutcome(request=dict(request), refusal=PiiRefusal("deny", message, rule=masker.denied))
    if policy.mode == "block" and counts:
        detectors = tuple(kind for kind in DETECTORS if kind in counts)
        message = (
            "The request was refused by the route's data policy: it contains "
            f"{', '.join(detectors)} data, which this route does not accept."
        )
        return PiiOutcome(request=dict(request), counts=counts, refusal=PiiRefusal("pii", message, detectors))
    return PiiOutcome(request=masked, counts=counts, mapping=masker.mapping)


def restore_completion(outcome: PiiOutcome, completion: Json) -> Json:
    """A chat.completion with the request's placeholders replaced by the originals in every
    choice's content (string or text parts), refusal and tool-call arguments (JSON-escaped
    there). Without a mapping the completion is returned as is."""
    if not outcome.mapping or not isinstance(completion.get("choices"), list):
        return completion
    mapping = outcome.mapping

    def text(value: str) -> str:
        return _restore(value, mapping, json_escape=False)

    def arguments(value: str) -> str:
        return _restore(value, mapping, json_escape=True)

    def choice(item: Any) -> Any:
        if not isinstance(item, dict) or not isinstance(item.get("message"), dict):
            return item
        message = dict(item["message"])
        if "content" in message:
            message["content"] = _map_content(message["content"], text)
        if isinstance(message.get("refusal"), str):
            message["refusal"] = text(message["refusal"])
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            message["tool_calls"] = [
                {**call, "function": {**call["function"], "arguments": arguments(call["function"]["arguments"])}}
                if isinstance(call, dict)
                and isinstance(call.get("function"), dict)
                and isinstance(call["function"].get("arguments"), str)
                else call
                for call in calls
            ]
        if isinstance(message.get("function_call"), dict) and isinstance(
            message["function_call"].get("arguments"), str
        ):
            message["function_call"] = {
                **message["function_call"],
                "arguments": arguments(message["function_call"]["arguments"]),
            }
        return {**item, "message": message}

    return {**completion, "choices": [choice(item) for item in completion["choices"]]}


# -- capture -------------------------------------------------------------------------------------------

_ALL = frozenset(DETECTORS)


def mask_for_capture(text: str, max_bytes: int) -> str:
    """``text`` with every detector's findings redacted, then cut to at most ``max_bytes``
    of UTF-8 (on a character boundary, with a marker saying how much was cut). Redaction
    comes first, over the whole text, so a value cut in half is never left unrecognised."""
    masker = _Masker(_scanner(_ALL) or _Scanner(()), "redact", None)
    encoded = masker(text).encode("utf-8", "replace")  # a lone surrogate becomes "?"
    if len(encoded) <= max_bytes:
        return encoded.decode("utf-8")
    marker = f"…[truncated {len(encoded)} bytes]"
    room = max(max_bytes - len(marker.encode()), 0)
    kept = encoded[:room].decode("utf-8", "ignore")  # drops a character cut in half
    return (kept + marker).encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
