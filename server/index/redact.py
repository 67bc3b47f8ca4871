"""Secret-shaped text is kept out of the index and out of prompts.

Only high-confidence shapes: private-key blocks, cloud and service tokens with a known prefix,
and assignments of long literal values to names that say secret (API_TOKEN = "...", a password
of words run together). A line
that holds one keeps its place (chunk line numbers stay right) but loses the value: a token or
an assigned value is replaced by REDACTED, a private-key block's lines by REDACTED alone.
Callers: `files.read_text_file` (indexing and training data) and the assistant (the open
buffer's prefix and suffix).
"""

from __future__ import annotations

import json
import re

# Moves with every change to what redaction keeps out (2: passphrases of words run together),
# with INDEX_FORMAT_VERSION: a training dataset built under other rules is not trained on.
REDACTION_VERSION = 2

# Matched (gitignore-style) against a file's workspace path and, for a symlink, its target's.
DEFAULT_SECRET_PATTERNS: list[str] = [
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.keystore",
    "*.jks",
    "*.ppk",
    "*.asc",
    "*.gpg",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    "_netrc",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".git-credentials",
    ".dockercfg",
    "**/.docker/config.json",  # at any depth (a pattern with a slash is anchored)
    "**/.kube/config",
    "kubeconfig",
    "*.kubeconfig",
    "**/.aws/credentials",
    "**/.aws/config",
    "credentials",
    "credentials.json",
    "*credentials*.json",
    "*-credentials.*",
    "*service-account*.json",
    "*service_account*.json",
    "client_secret*.json",
    "*.tfvars",
    "*.tfvars.json",
    "*.tfstate",
    "*.tfstate.backup",
    "secrets.*",
    "*.secret",
    "*.secrets",
    ".htpasswd",
]

REDACTED = "<redacted>"
# A 4096-bit RSA key in PEM is 51 lines.
KEY_BLOCK_MAX_LINES = 120

_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_TOKENS = re.compile(
    "|".join(
        (
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
            r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
            r"\bgithub_pat_[A-Za-z0-9_]{22,}",
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
            r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
            r"\bsk-[A-Za-z0-9_-]{20,}",  # OpenAI-style keys
            r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
            r"\bglpat-[A-Za-z0-9_-]{20,}",  # GitLab
            r"\bnpm_[A-Za-z0-9]{36}",  # npm
            r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",  # JWT
        )
    )
)
# NAME = "value", NAME: value, NAME := value, "name": "value", NAME=value (.env). The name must
# say secret (tokenizer, author... do not); an unquoted value must look like a credential, not code.
# The name is tried once per run of name characters (never from inside one), checked by a
# lookahead and taken whole (possessive): the former `[...]*secret[...]*` form backtracked over
# every split of a long run, cubic in its length (a 2,400-character run took seconds).
_ASSIGNMENT = re.compile(
    r"""(?P<lead>["']?(?<![A-Za-z0-9_.-])(?P<name>(?=[A-Za-z0-9_.-]*?(?:secret|token(?!iz)|"""
    r"""passw(?:or)?d|pwd|passphrase|api[_-]?key|apikey|access[_-]?key|private[_-]?key))"""
    r"""[A-Za-z0-9_.-]++)["']?"""
    r"""\s*(?::=|=>|=|:)\s*)(?:(?P<quote>["'`])(?P<qvalue>[^"'`\s]{12,})(?P=quote)"""
    r"""|(?P<uvalue>[A-Za-z0-9_+/=.~@-]{12,})(?=$|[\s,;#]))""",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(
    r"changeme|change_me|xxx|\*\*\*|\.\.\.|<.*>|\$\{|\$\(|%\(|\{\{|your[_-]|example|dummy|"
    r"placeholder|redacted|getenv|environ|process\.env|"
    r"^https?://[^@]*$|^[a-z_.-]+$|^[A-Z_.-]+$|^\d+$",
    re.IGNORECASE,
)
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# A password or passphrase of lower-case words run together ("correcthorsebattery"): no digit,
# but no separator either, where a key or setting name ("access_token") would have one.
_PASSWORD_NAME = re.compile(r"passw(?:or)?d|pwd|passphrase", re.IGNORECASE)
_RUN_OF_WORDS = re.compile(r"[a-z]{12,}")
_PLACEHOLDER_WORD = re.compile(
    r"changeme|example|dummy|placeholder|redacted|secret|password|passphrase|token"
)


def _secret_value(value: str, quoted: bool, name: str = "") -> bool:
    if len(set(value)) < 5:
        return False
    if _RUN_OF_WORDS.fullmatch(value) and _PASSWORD_NAME.search(name):
        return not _PLACEHOLDER_WORD.search(value)
    if _PLACEHOLDER.search(value):
        return False
    if quoted:
        return True
    # unquoted: a credential has letters and digits; a (dotted) name is code
    digits = sum(c.isdigit() for c in value)
    letters = sum(c.isalpha() for c in value)
    if digits < 2 or letters < 2:
        return False
    return not (_DOTTED_NAME.fullmatch(value) and "." in value)


def _redact_assignment(match: re.Match[str]) -> str:
    quote = match.group("quote") or ""
    value = match.group("qvalue") if quote else match.group("uvalue")
    if REDACTED in value or not _secret_value(value, bool(quote), match.group("name")):
        return match.group(0)
    return match.group("lead") + f"{quote}{REDACTED}{quote}"


def redact_line(line: str) -> str:
    """The line with secret-shaped values replaced (unchanged when it holds none)."""
    return _ASSIGNMENT.sub(_redact_assignment, _TOKENS.sub(REDACTED, line))


def redact_secrets(text: str) -> str:
    """`text` with secret-shaped lines redacted; the number of lines never changes."""
    if not text:
        return text
    lines = text.split("\n")
    changed = False
    number = 0
    while number < len(lines):
        line = lines[number]
        last = number
        if _KEY_BEGIN.search(line):
            # the whole block, if it ends like a key does (code that only names the marker
            # loses that line alone)
            ends = (
                i
                for i in range(number, min(len(lines), number + KEY_BLOCK_MAX_LINES))
                if _KEY_END.search(lines[i])
            )
            last = next(ends, number)
            for i in range(number, last + 1):
                lines[i] = REDACTED + ("\r" if lines[i].endswith("\r") else "")
            changed = True
        else:
            new = redact_line(line)
            if new != line:
                lines[number] = new
                changed = True
        number = last + 1
    return "\n".join(lines) if changed else text


def redact_window(text: str, start: int) -> str:
    """`text` with secrets redacted from `start` onwards (the part a prompt can reach), looking
    back far enough to see a private-key block that began before it."""
    for _ in range(KEY_BLOCK_MAX_LINES + 1):
        if start <= 0:
            return redact_secrets(text)
        start = text.rfind("\n", 0, start - 1) + 1
    return text[:start] + redact_secrets(text[start:])


def redact_buffer(text: str, offset: int, before: int, after: int) -> tuple[str, str]:
    """The prefix and suffix around `offset`, redacted within `before` characters before it and
    `after` characters after it (the most a prompt takes; the rest never reaches the model, and
    redacting all of a huge buffer on every keystroke would cost what bounded prompts saved)."""
    prefix, suffix = text[:offset], text[offset:]
    prefix = redact_window(prefix, len(prefix) - before)
    cut = suffix.find("\n", after)
    if cut < 0:
        return prefix, redact_secrets(suffix)
    return prefix, redact_secrets(suffix[:cut]) + suffix[cut:]


def is_service_account_json(text: str) -> bool:
    """A Google Cloud service-account key file (or any JSON credential with a private key)."""
    if '"private_key"' not in text:
        return False
    try:
        data = json.loads(text)
    except ValueError:
        return '"client_email"' in text
    return isinstance(data, dict) and "private_key" in data and "client_email" in data
