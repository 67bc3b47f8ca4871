"""Customer accounts."""

from __future__ import annotations

MAX_LOGIN_ATTEMPTS = 5  # failed logins before an account is locked


class Account:
    """A customer account with a login counter."""

    def __init__(self, email: str) -> None:
        self.email = email
        self.failures = 0
        self.locked = False

    def record_failure(self) -> None:
        """Count a failed login and lock the account after too many."""
        self.failures += 1
        if self.failures >= MAX_LOGIN_ATTEMPTS:
            self.locked = True


def normalize_email(email: str) -> str:
    """Lower-case an email address and strip spaces around it."""
    return email.strip().lower()
